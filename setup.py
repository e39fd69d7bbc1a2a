"""Packaging for `labml_nn`: annotated, tested PyTorch implementations of transformers.

Runtime dependencies are torch and numpy only. Everything else is an extra:

* `experiments`: the command line, progress bars and plots of `python -m labml_nn.transformers.<module>`
* `plot`: matplotlib alone, for the figures
* `llama`: tiktoken, to read Meta's Llama 3 tokenizer
* `jax`: JAX (CPU wheels), Flax and Optax, for the JAX/Flax companion of the from-scratch track
* `hf`: safetensors, to read Hugging Face checkpoints (`load_hf` of GPT-2, BERT, T5, Llama, Mixtral)
* `tensorboard`: TensorBoard, for the trainer's `--tensorboard` logging
* `docs`: the annotated site (mkdocs-material, mkdocstrings, pymdown-extensions, jupytext, ruff)
* `test`: pytest, Playwright for the browser tests, and Hugging Face's `transformers` as the reference that the
  loaders are checked against (tests build tiny random models with it; nothing is downloaded)
"""
from setuptools import find_packages, setup

PLOT = ["matplotlib>=3.7"]
EXPERIMENTS = ["tyro>=0.9", "tqdm>=4.66"] + PLOT
LLAMA = ["tiktoken>=0.7"]
HF = ["safetensors>=0.4"]
TENSORBOARD = ["tensorboard>=2.14"]
JAX = ["jax[cpu]>=0.7", "flax>=0.12", "optax>=0.2.5"]
DOCS = [
    "mkdocs>=1.6,<2",
    "mkdocs-material>=9.5",
    "mkdocstrings[python]>=0.26",
    "pymdown-extensions>=10.8",
    "jupytext>=1.16",
    "ruff>=0.5",  # mkdocstrings formats the API pages' signatures with it (one binary, no dependencies)
] + EXPERIMENTS
TEST = ["pytest>=8", "pytest-xdist>=3.5", "pytest-timeout>=2.3", "playwright>=1.45", "transformers>=4.46"] + EXPERIMENTS + LLAMA + HF + TENSORBOARD

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="labml_nn",
    version="0.5.0",
    description="Annotated PyTorch implementations of transformers, with a site that shows the notes beside the code",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["labml_nn", "labml_nn.*"]),
    install_requires=["torch>=2.5", "numpy>=1.24"],
    extras_require={
        "experiments": EXPERIMENTS,
        "plot": PLOT,
        "llama": LLAMA,
        "hf": HF,
        "tensorboard": TENSORBOARD,
        "jax": JAX,
        "docs": DOCS,
        "test": TEST,
        "all": sorted(set(DOCS + TEST + LLAMA + HF + JAX)),
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
