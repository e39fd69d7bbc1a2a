"""`python -m labml_nn.transformers.parallel --plan llama-3.1-8b --gpus 16 --gpu-memory 80` prints
[the plan](/transformers/parallel/plan.md): which layouts fit, their memory and communication."""

if __name__ == "__main__":
    from labml_nn.transformers.parallel.plan import main

    main()
