"""`python -m labml_nn.transformers.moe` runs the [mixture-of-experts experiment](/transformers/experiments/moe.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.moe import main

    main()
