"""`python -m labml_nn.transformers.rope` runs the [rotary embeddings experiment](/transformers/experiments/rope.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.rope import main

    main()
