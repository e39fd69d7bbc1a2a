"""`python -m labml_nn.transformers.llama` runs the [Llama experiment](/transformers/experiments/llama.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.llama import main

    main()
