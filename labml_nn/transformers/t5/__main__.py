"""`python -m labml_nn.transformers.t5` runs the [T5 experiment](/transformers/experiments/t5.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.t5 import main

    main()
