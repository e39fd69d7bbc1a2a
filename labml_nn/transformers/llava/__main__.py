"""`python -m labml_nn.transformers.llava` runs the [LLaVA experiment](/transformers/experiments/llava.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.llava import main

    main()
