"""The experiments of mha, positional_encoding, rope, feed_forward, models, utils and label_smoothing_loss: each
smoke-runs as `python -m labml_nn.transformers.<module> --preset tiny` in a subprocess and writes its files; their
measurements are checked against brute-force references; a resumed comparison equals an uninterrupted one."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labml_nn.experiments.char_lm import loss_by_position, tiny_model
from labml_nn.experiments.compare import summarise
from labml_nn.transformers.experiments.feed_forward import gated_width
from labml_nn.transformers.experiments.label_smoothing_loss import calibration
from labml_nn.transformers.experiments.models import END, FIRST_DIGIT, PAD, START, ReversalTask
from labml_nn.transformers.experiments.utils import MaskedLM, gradient_norms, largest_leak

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("single_thread")


def run_tiny(module: str, out: Path, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", f"labml_nn.transformers.{module}", "--preset", "tiny",
                           "--device", "cpu", "--out", str(out), *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    for name in ("config.json", "metrics.jsonl", "loss.png", "result.json"):
        assert (out / name).is_file(), f"{module}: {name} missing"
    assert (out / "loss.png").read_bytes()[:8] == PNG
    result = json.loads((out / "result.json").read_text())
    assert json.loads(done.stdout) == result
    return result


def assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG, path


def assert_comparison(result: dict, out: Path, variants: list[str]) -> None:
    """A comparison's result keys its figures by variant, and each variant has its own run directory."""
    for key in ("val_loss", "train_loss", "steps", "tokens_per_s", "parameters"):
        assert list(result[key]) == variants, key
    assert result["wall_s"] > 0
    for variant in variants:
        assert (out / variant / "checkpoint.pt").is_file()
        assert json.loads((out / variant / "result.json").read_text())["steps"] == result["steps"][variant]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted({line["variant"] for line in lines}) == sorted(variants)


# ## Every experiment runs and writes its files


def test_utils_leak_test(tmp_path):
    result = run_tiny("utils", tmp_path)
    assert result["leak_with_mask"] == 0.0 and result["leak_without_mask"] > 0
    assert_comparison(result, tmp_path, ["causal", "unmasked"])
    assert set(result["last_position_loss"]) == {"causal", "unmasked"} and len(result["sample"]["causal"]) == 11
    assert_png(tmp_path / "gradients.png")
    assert_png(tmp_path / "loss_by_position.png")


def test_mha_attention_maps(tmp_path):
    result = run_tiny("mha", tmp_path)
    assert {"val_loss", "train_loss", "steps", "wall_s", "tokens_per_s"} <= result.keys()
    layers, heads = 1, 2
    assert [len(row) for row in result["attention_distance"]] == [heads] * layers
    # Under the causal mask a query looks back between 0 and seq - 1 positions, on average less than half of it
    assert all(0 <= d <= 7.5 for row in result["attention_distance"] for d in row)
    assert result["explicit_vs_fast_max_difference"] < 1e-5
    assert_png(tmp_path / "attention.png")
    assert_png(tmp_path / "attention_head.png")


def test_positional_encoding_comparison(tmp_path):
    result = run_tiny("positional_encoding", tmp_path)
    assert_comparison(result, tmp_path, ["fixed", "learned", "none"])
    # The learned table is the only extra parameters: 16 positions x 32 features
    assert result["parameters"]["learned"] - result["parameters"]["fixed"] == 16 * 32
    assert result["parameters"]["none"] == result["parameters"]["fixed"]
    assert result["best"] == min(result["val_loss"], key=result["val_loss"].get)
    assert_png(tmp_path / "encoding.png")


def test_rope_comparison(tmp_path):
    result = run_tiny("rope", tmp_path)
    assert_comparison(result, tmp_path, ["rope", "fixed"])
    assert set(result["val_loss_beyond_context"]) == {"rope", "fixed"}
    assert_png(tmp_path / "loss_by_position.png")


def test_feed_forward_comparison_at_equal_parameters(tmp_path):
    result = run_tiny("feed_forward", tmp_path, "--variants", "relu", "swiglu")
    assert_comparison(result, tmp_path, ["relu", "swiglu"])
    assert result["d_ff"] == {"relu": 64, "swiglu": gated_width(64)}
    relu, swiglu = result["parameters"]["relu"], result["parameters"]["swiglu"]
    assert abs(relu - swiglu) / relu < 0.05
    assert_png(tmp_path / "activations.png")


def test_models_reversal(tmp_path):
    result = run_tiny("models", tmp_path)
    assert {"val_loss", "train_loss", "steps", "wall_s", "tokens_per_s"} <= result.keys()
    for name in ("greedy", "beam"):
        assert 0.0 <= result[f"{name}_accuracy"] <= 1.0
        assert sorted(map(int, result[f"{name}_accuracy_by_length"])) == [1, 2, 3, 4]
    assert (tmp_path / "checkpoint.pt").is_file()
    assert_png(tmp_path / "accuracy_by_length.png")


def test_label_smoothing_comparison(tmp_path):
    result = run_tiny("label_smoothing_loss", tmp_path)
    assert_comparison(result, tmp_path, ["smoothing_0", "smoothing_0.1"])
    assert "best" not in result
    for name in ("smoothing_0", "smoothing_0.1"):
        assert 0 <= result["val_ece"][name] <= 1 and 0 <= result["val_accuracy"][name] <= 1
        assert math.isfinite(result["val_nll"][name])
    assert_png(tmp_path / "reliability.png")


def test_bad_variants_are_a_clear_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "labml_nn.transformers.positional_encoding", "--preset", "tiny",
                           "--variants", "fixed", "fixed", "--out", str(tmp_path)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "variants must be distinct" in done.stderr


# ## A comparison resumes variant by variant


def test_resumed_comparison_equals_an_uninterrupted_one(tmp_path):
    # A constant learning rate, so that extending --max-steps does not change the steps before it.
    constant = ["--variants", "fixed", "none", "--warmup", "0", "--lr", "3e-3", "--min-lr", "3e-3", "--log-every", "1"]
    whole = run_tiny("positional_encoding", tmp_path / "whole", *constant, "--max-steps", "6")
    run_tiny("positional_encoding", tmp_path / "resumed", *constant, "--max-steps", "3")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "labml_nn.transformers.positional_encoding",
                           "--resume", str(tmp_path / "resumed"), "--max-steps", "6"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    resumed = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert resumed["val_loss"] == whole["val_loss"] and resumed["steps"] == {"fixed": 6, "none": 6}

    # The first run also evaluated at its last step, 3; the training losses of every step are the same.
    def train_losses(run):
        lines = map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
        return [(r["variant"], r["step"], r["train_loss"]) for r in lines if "train_loss" in r]

    assert train_losses("resumed") == train_losses("whole") and len(train_losses("whole")) == 12
    for variant in ("fixed", "none"):
        a = torch.load(tmp_path / "whole" / variant / "checkpoint.pt", weights_only=True)["model"]
        b = torch.load(tmp_path / "resumed" / variant / "checkpoint.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


# ## The measurements, against brute force


def test_reversal_task_against_python_reversal():
    task = ReversalTask(1, 6)
    src, decoder_input, target = task.sample(torch.Generator().manual_seed(0), 50)
    assert src.shape == (50, 6) and decoder_input.shape == target.shape == (50, 7)
    for s, d, t in zip(src.tolist(), decoder_input.tolist(), target.tolist()):
        digits = [x for x in s if x != PAD]
        assert s == digits + [PAD] * (6 - len(digits)) and 1 <= len(digits) <= 6
        assert all(FIRST_DIGIT <= x < FIRST_DIGIT + 10 for x in digits)
        expected = digits[::-1] + [END]
        assert t == expected + [PAD] * (7 - len(expected))
        assert d == [START] + t[:-1]


def test_loss_by_position_against_a_loop(data_dir):
    from labml_nn.experiments.data import BlockSource, load_tiny_shakespeare
    from labml_nn.transformers.experiments.configs import DecoderOnlyLM
    data = load_tiny_shakespeare(data_dir)
    model = DecoderOnlyLM(tiny_model(n_src_vocab=data.tokenizer.n_vocab))
    curve = loss_by_position(model, data.val, 16, batches=3, batch_size=4, seed=5)
    generator = torch.Generator().manual_seed(5)
    source = BlockSource(data.val, 16)
    expected = torch.zeros(16)
    with torch.no_grad():
        for _ in range(3):
            x, y = source.sample(generator, 4)
            logits = model.eval()(x)
            for t in range(16):
                for b in range(4):
                    expected[t] += -logits[b, t].log_softmax(-1)[y[b, t]] / 12
    torch.testing.assert_close(curve, expected, rtol=1e-5, atol=1e-5)


def test_gradient_leak_is_exactly_zero_with_the_mask_and_matches_autograd_jacobian():
    torch.manual_seed(0)
    model = MaskedLM(tiny_model(n_src_vocab=20))
    tokens = torch.randint(0, 20, (1, 9))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    with_mask = gradient_norms(model, inputs, targets)
    lower = torch.ones(8, 8, dtype=torch.bool).tril()
    assert largest_leak(with_mask) == 0.0 and with_mask[lower].min() > 0
    model.causal = False
    without_mask = gradient_norms(model, inputs, targets)
    assert largest_leak(without_mask) > 0
    # Row t against the full Jacobian of all the losses, taken by torch.autograd.functional
    model.eval()
    x = model.embed(inputs).detach()

    def losses(embedded):
        return F.cross_entropy(model.logits_from_embeddings(embedded)[0], targets[0], reduction="none")

    jacobian = torch.autograd.functional.jacobian(losses, x)  # [seq, 1, seq, d_model]
    torch.testing.assert_close(without_mask, jacobian[:, 0].norm(dim=-1))


def test_calibration_against_a_loop(data_dir):
    from labml_nn.experiments.data import BlockSource, load_tiny_shakespeare
    data = load_tiny_shakespeare(data_dir)
    torch.manual_seed(1)
    # A stand-in model whose logits for each input character are a random row, confident to various degrees
    model = torch.nn.Embedding(data.tokenizer.n_vocab, data.tokenizer.n_vocab)
    with torch.no_grad():
        model.weight.mul_(torch.linspace(0.5, 6, data.tokenizer.n_vocab)[:, None])
    result = calibration(model, data.val, 16, batches=2, batch_size=4, bins=10, seed=3)
    generator = torch.Generator().manual_seed(3)
    source = BlockSource(data.val, 16)
    predictions = []
    with torch.no_grad():
        for _ in range(2):
            x, y = source.sample(generator, 4)
            probs = model.eval()(x).softmax(-1)
            for b in range(4):
                for t in range(16):
                    p = probs[b, t]
                    predictions.append((p.max().item(), int(p.argmax() == y[b, t]), math.log(p[y[b, t]].item())))
    ece = 0.0
    for b in range(10):
        members = [(c, ok) for c, ok, _ in predictions if min(int(c * 10), 9) == b]
        if members:
            confidence = sum(c for c, _ in members) / len(members)
            accuracy = sum(ok for _, ok in members) / len(members)
            ece += len(members) / len(predictions) * abs(accuracy - confidence)
    assert sum(c > 0 for c in result["reliability"]["count"]) >= 3
    assert result["val_ece"] == pytest.approx(ece, abs=1e-5)
    assert result["val_accuracy"] == pytest.approx(sum(ok for _, ok, _ in predictions) / len(predictions))
    assert result["val_nll"] == pytest.approx(-sum(ll for _, _, ll in predictions) / len(predictions), rel=1e-4)


def test_gated_width_equalises_the_weights():
    for d_ff in (512, 1365, 2048, 3072):
        ratio = 3 * gated_width(d_ff) / (2 * d_ff)
        assert abs(ratio - 1) < 0.02, d_ff


def test_summary_keys_figures_by_variant():
    results = {"a": {"val_loss": 2.0, "train_loss": 1.9, "steps": 5, "tokens_per_s": 10.0, "parameters": 7,
                     "wall_s": 1.0, "extra": 3},
               "b": {"val_loss": 1.5, "train_loss": 1.6, "steps": 5, "tokens_per_s": 12.0, "parameters": 9,
                     "wall_s": 2.0, "extra": 4}}
    summary = summarise(results, figures=["extra"])
    assert summary["val_loss"] == {"a": 2.0, "b": 1.5} and summary["extra"] == {"a": 3, "b": 4}
    assert summary["best"] == "b" and summary["wall_s"] == 3.0
    assert "best" not in summarise(results, rank_by=None)
