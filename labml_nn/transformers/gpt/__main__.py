"""`python -m labml_nn.transformers.gpt` runs the [GPT experiment](/transformers/experiments/gpt.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.gpt import main

    main()
