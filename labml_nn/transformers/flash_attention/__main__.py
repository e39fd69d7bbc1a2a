"""`python -m labml_nn.transformers.flash_attention` runs the [FlashAttention experiment](/transformers/experiments/flash_attention.md)."""

if __name__ == "__main__":
    from labml_nn.transformers.experiments.flash_attention import main

    main()
