"""The from-scratch track: chapter 2's demonstrations against independent computations, causality, chapter 5
equal to the library's GPT, PyTorch and JAX/Flax giving the same logits, loss and AdamW step from the same
weights, every chapter run as its command and as its notebook in both frameworks, and bad input."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labml_nn.transformers.from_scratch import ch0_infrastructure as ch0
from labml_nn.transformers.from_scratch import ch2_self_attention as ch2
from labml_nn.transformers.from_scratch import ch5_gpt as ch5
from labml_nn.transformers.from_scratch.ch0_infrastructure import Config
from labml_nn.transformers.utils import count_parameters

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = ["ch0_infrastructure", "ch1_bigram", "ch2_self_attention", "ch3_multi_head", "ch4_block", "ch5_gpt"]
ATTENTION_CHAPTERS = CHAPTERS[2:]
N_VOCAB = 65
# Small, but with several heads and blocks, so that the head order and the block order matter.
SMALL = Config(batch_size=4, block_size=8, n_embd=16, n_head=4, n_layer=2, dropout=0.1, lr=1e-3)

pytestmark = pytest.mark.usefixtures("single_thread")


def torch_chapter(name: str):
    return importlib.import_module(f"labml_nn.transformers.from_scratch.{name}")


def perturb_1d_(model: nn.Module) -> None:
    """Biases start at zero and norm gains at one: a mapping that drops or swaps them would still agree."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)


def torch_model(name: str, config: Config = SMALL) -> nn.Module:
    torch.manual_seed(0)
    model = torch_chapter(name).build_model(config, N_VOCAB)
    perturb_1d_(model)
    return model.eval()


# ## Chapter 2's demonstrations

def test_mean_of_past_matches_a_loop():
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    expected = torch.empty_like(x)
    for b in range(3):
        for t in range(7):
            expected[b, t] = x[b, :t + 1].sum(dim=0) / (t + 1)
    torch.testing.assert_close(ch2.mean_of_past_matmul(x), expected)
    torch.testing.assert_close(ch2.mean_of_past_softmax(x), expected)


@pytest.mark.parametrize("head_size", [4, 16, 64])
def test_score_variance_with_and_without_the_scale(head_size):
    # Independently: q.k summed over d_k products of unit-variance independent factors has variance d_k.
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 20_000, head_size))
    sampled = (q * k).sum(axis=-1).var()
    unscaled = ch2.score_variance(head_size, scaled=False, n=20_000)
    scaled = ch2.score_variance(head_size, scaled=True, n=20_000)
    # Sampling error of a variance from 20,000 draws: a few percent.
    assert unscaled == pytest.approx(head_size, rel=0.06)
    assert sampled == pytest.approx(head_size, rel=0.06)
    assert scaled == pytest.approx(1.0, rel=0.06)
    assert unscaled / scaled == pytest.approx(head_size, rel=1e-4)


def test_softmax_saturates_without_the_scale():
    spread, saturated = ch2.saturation(64)
    scores = np.array([0.1, -0.2, 0.3, -0.2, 0.5])
    expected = np.exp(8 * scores) / np.exp(8 * scores).sum()
    np.testing.assert_allclose(saturated.numpy(), expected, rtol=1e-5)
    assert saturated.max() > 0.79 and spread.max() < 0.3


# ## Causality and the end of the track

@pytest.mark.parametrize("name", ATTENTION_CHAPTERS)
def test_later_characters_never_change_earlier_predictions(name):
    model = torch_model(name)
    ids = torch.randint(N_VOCAB, (2, SMALL.block_size))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % N_VOCAB
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-3


def test_chapter_5_equals_the_library_gpt():
    model = torch_model("ch5_gpt")
    assert model.lm_head.weight is model.token_embedding_table.weight
    gpt = ch5.to_library_gpt(model, SMALL, N_VOCAB).eval()
    assert count_parameters(gpt) == count_parameters(model)
    ids = torch.randint(N_VOCAB, (3, SMALL.block_size))
    with torch.no_grad():
        torch.testing.assert_close(gpt(ids), model(ids), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gpt(ids[:, :3]), model(ids[:, :3]), rtol=1e-5, atol=1e-5)


def test_chapter_5_mapping_is_strict():
    state = ch5.library_state_dict(torch_model("ch5_gpt"))
    # The heads' rows are stacked in order: head 1's query is the second slice of the library's query.
    head_size = SMALL.n_embd // SMALL.n_head
    head = torch_model("ch5_gpt").blocks[0].sa.heads[1].query.weight
    torch.testing.assert_close(state["encoder.layers.0.self_attn.query.weight"][head_size:2 * head_size], head)
    del state["encoder.layers.1.norm_ff.bias"]
    gpt = ch5.GPT(ch5.library_configs(SMALL, N_VOCAB))
    with pytest.raises(RuntimeError, match="norm_ff.bias"):
        gpt.load_state_dict(state, strict=True)


# ## Bad input

def test_block_size_longer_than_the_text():
    with pytest.raises(ValueError, match="block_size"):
        ch0.load_data("To be, or not to be", block_size=8)


def test_unknown_device():
    with pytest.raises(ValueError, match="device"):
        ch0.main(["--device", "tpu", "--max-steps", "1"])


def test_prompt_outside_the_vocabulary(tmp_path):
    tokenizer = ch0.Tokenizer("hello world")
    with pytest.raises(ValueError, match="'xz'"):
        tokenizer.encode("low zx")
    with pytest.raises(ValueError, match="vocabulary"):
        ch0.main(["--device", "cpu", "--max-steps", "1", "--prompt", "ROMEO€", "--out", str(tmp_path)])


def test_sequence_longer_than_block_size():
    with pytest.raises(ValueError, match="block_size"):
        torch_model("ch2_self_attention")(torch.zeros(1, SMALL.block_size + 1, dtype=torch.long))


# ## PyTorch and JAX/Flax: the same weights give the same logits, loss and AdamW step

@pytest.fixture(scope="module")
def jax_modules():
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    import jax

    jax.config.update("jax_platforms", "cpu")
    return importlib.import_module("labml_nn.transformers.from_scratch.flax.ch0_infrastructure")


def flax_copy(name: str, model: nn.Module, config: Config = SMALL):
    from flax import nnx

    from labml_nn.transformers.from_scratch.flax.ch0_infrastructure import copy_from_torch

    flax_model = importlib.import_module(f"labml_nn.transformers.from_scratch.flax.{name}").build_model(
        config, N_VOCAB, nnx.Rngs(0))
    copy_from_torch(flax_model, model)
    return flax_model


@pytest.mark.parametrize("name", CHAPTERS)
def test_flax_logits_and_loss_equal_pytorch(jax_modules, name):
    import jax.numpy as jnp

    model = torch_model(name)
    flax_model = flax_copy(name, model)
    flax_model.eval()
    x = torch.randint(N_VOCAB, (3, SMALL.block_size))
    y = torch.randint(N_VOCAB, (3, SMALL.block_size))
    with torch.no_grad():
        logits = model(x).detach()
        loss = ch0.loss_fn(logits, y)
    flax_logits = flax_model(jnp.asarray(x.numpy()))
    np.testing.assert_allclose(np.asarray(flax_logits), logits.numpy(), rtol=1e-5, atol=1e-5)
    flax_loss = jax_modules.loss_fn(flax_logits, jnp.asarray(y.numpy()))
    assert float(flax_loss) == pytest.approx(loss.item(), abs=1e-5)


@pytest.mark.parametrize("name", CHAPTERS)
def test_one_adamw_step_is_the_same(jax_modules, name):
    import jax.numpy as jnp

    config = Config(batch_size=4, block_size=8, n_embd=16, n_head=4, n_layer=2, dropout=0.0, lr=1e-3)
    model = torch_model(name, config).train()
    flax_model = flax_copy(name, model, config)
    x = torch.randint(N_VOCAB, (4, config.block_size))
    y = torch.randint(N_VOCAB, (4, config.block_size))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    ch0.train_step(model, ch0.make_optimizer(model, config), x, y)
    jax_modules.train_step(flax_model, jax_modules.make_optimizer(flax_model, config),
                           jnp.asarray(x.numpy()), jnp.asarray(y.numpy()))
    # The stepped Flax weights, read back through a PyTorch model of the same shape.
    stepped = torch_chapter(name).build_model(config, N_VOCAB)
    moved = 0.0
    for (key, theirs), (_, ours) in zip(flax_state_as_torch(flax_model, stepped).items(),
                                        model.named_parameters()):
        np.testing.assert_allclose(theirs, ours.detach().numpy(), rtol=0, atol=1e-5, err_msg=key)
        moved = max(moved, (ours - before[key]).abs().max().item())
    # The step moved the weights by about the learning rate: the comparison is not of unchanged weights.
    assert moved > 5e-4


def flax_state_as_torch(flax_model, torch_model: nn.Module) -> dict[str, np.ndarray]:
    """The Flax model's parameters under PyTorch's names, in PyTorch's layout (the inverse walk of
    `copy_from_torch`, written out here so that the comparison does not trust it)."""
    from flax import nnx

    out = {}
    for name, _ in torch_model.named_parameters():
        *path, field = name.split(".")
        module = flax_model
        for part in path:
            module = (module.layers if isinstance(module, nnx.Sequential) else module)[int(part)] \
                if part.isdigit() else getattr(module, part)
        if isinstance(module, nnx.Linear):
            value = module.kernel[...].T if field == "weight" else module.bias[...]
        elif isinstance(module, nnx.Embed):
            value = module.embedding[...]
        elif isinstance(module, nnx.LayerNorm):
            value = module.scale[...] if field == "weight" else module.bias[...]
        else:
            value = getattr(module, field)[...]
        out[name] = np.asarray(value)
    return out


@pytest.mark.parametrize("name", ATTENTION_CHAPTERS)
def test_flax_causality(jax_modules, name):
    import jax.numpy as jnp

    flax_model = flax_copy(name, torch_model(name))
    flax_model.eval()
    ids = np.random.default_rng(0).integers(N_VOCAB, size=(2, SMALL.block_size))
    changed = ids.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % N_VOCAB
    a, b = np.asarray(flax_model(jnp.asarray(ids))), np.asarray(flax_model(jnp.asarray(changed)))
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-3


def test_flax_bad_input(jax_modules):
    with pytest.raises(ValueError, match="device"):
        jax_modules.get_device("tpu")
    with pytest.raises(ValueError, match="block_size"):
        jax_modules.load_data("To be, or not to be", block_size=8)


def test_flax_chapter_2_demonstrations(jax_modules):
    from labml_nn.transformers.from_scratch.flax import ch2_self_attention as flax_ch2

    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    expected = np.cumsum(x, axis=1) / np.arange(1, 7)[None, :, None]
    np.testing.assert_allclose(np.asarray(flax_ch2.mean_of_past_matmul(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(flax_ch2.mean_of_past_softmax(x)), expected, rtol=1e-5, atol=1e-6)
    assert flax_ch2.score_variance(64, scaled=False) == pytest.approx(64, rel=0.06)
    assert flax_ch2.score_variance(64, scaled=True) == pytest.approx(1.0, rel=0.06)


# ## Smoke runs: every chapter as its command and as its notebook, in both frameworks

TINY_ARGS = ["--device", "cpu", "--max-steps", "2", "--eval-iters", "1", "--sample-chars", "5"]


def framework_prefix(framework: str) -> str:
    if framework == "jax":
        pytest.importorskip("jax")
        pytest.importorskip("flax")
        return "labml_nn.transformers.from_scratch.flax."
    return "labml_nn.transformers.from_scratch."


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}


def chapter_args(name: str) -> list[str]:
    return TINY_ARGS + (["--preset", "tiny"] if name == "ch5_gpt" else [])


@pytest.mark.parametrize("framework", ["pytorch", "jax"])
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_as_its_command(tmp_path, framework, name):
    module = framework_prefix(framework) + name
    done = subprocess.run([sys.executable, "-m", module, *chapter_args(name), "--out", str(tmp_path)],
                          env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["framework"] == framework and result["steps"] == 2
    assert np.isfinite(result["val_loss"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] == 0 and steps[-1] == 2
    assert len((tmp_path / "sample.txt").read_text(encoding="utf-8")) == 1 + 5


# One process per framework runs the six notebooks, one after another, each in a fresh namespace: the notebook
# is the site's (`site_src.notebooks`), read back with jupytext, its code cells executed in order, and its last
# cell, `main([])`, given the tiny options instead.
NOTEBOOK_RUNNER = r"""
import json, sys
import jupytext
from site_src.notebooks import notebook
sources, out, args = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
for name, (source, extra) in sources.items():
    cells = [c for c in jupytext.reads(notebook(open(source).read()), fmt="ipynb").cells if c.cell_type == "code"]
    assert cells[-1].source.strip() == "main([])", cells[-1].source
    namespace = {"__name__": "__notebook__"}
    for cell in cells[:-1]:
        exec(compile(cell.source, source, "exec"), namespace)
    namespace["main"](args + extra + ["--out", f"{out}/{name}"])
"""


@pytest.mark.parametrize("framework", ["pytorch", "jax"])
def test_chapters_run_as_their_notebooks(tmp_path, framework):
    pytest.importorskip("jupytext")
    prefix = framework_prefix(framework)
    sources = {name: (str(REPO / ((prefix + name).replace(".", "/") + ".py")), chapter_args(name)[len(TINY_ARGS):])
               for name in CHAPTERS}
    done = subprocess.run([sys.executable, "-c", NOTEBOOK_RUNNER, json.dumps(sources), str(tmp_path),
                           json.dumps(TINY_ARGS)],
                          env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in CHAPTERS:
        result = json.loads((tmp_path / name / "result.json").read_text())
        assert result["steps"] == 2 and result["framework"] == framework, name


def test_benchmark_smoke():
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "from_scratch.py"), "--tiny", "--rounds", "2",
                           "--steps", "2"], env=subprocess_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in CHAPTERS:
        assert name in done.stdout
    assert "jax.jit/PyTorch" in done.stdout and "nnx.jit/PyTorch" in done.stdout
