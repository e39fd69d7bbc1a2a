"""`python -m labml_nn.transformers.bert` runs the [BERT experiment](/transformers/experiments/bert.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.bert import main

    main()
