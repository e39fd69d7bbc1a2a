"""The mixture-of-experts experiment smoke-runs with its tiny preset in a subprocess; its parameter counts against
counts written out here; the MoE GPT's loss adds the layers' auxiliary losses in training only; the benchmark
smoke-runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from labml_nn.experiments.char_lm import tiny_model
from labml_nn.transformers.experiments.gpt import GPT2_CHOICES
from labml_nn.transformers.experiments.moe import MoEGPT, active_parameters, moe_loss
from labml_nn.transformers.moe import MoE

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def run(args, timeout=180):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_experiment_tiny_preset(tmp_path):
    done = run(["-m", "labml_nn.transformers.moe", "--preset", "tiny", "--device", "cpu", "--out", str(tmp_path),
                "--variants", "dense", "moe-no-aux", "capacity-1.0"])
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert list(result["val_loss"]) == ["dense", "moe-no-aux", "capacity-1.0"]
    assert result["dropped_fraction"]["moe-no-aux"] == 0.0 and result["dropped_fraction"]["dense"] is None
    assert result["dropped_fraction"]["capacity-1.0"] > 0
    assert result["parameters"]["moe-no-aux"] > result["parameters"]["dense"]
    for name in ("loss.png", "expert_load.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_parameter_counts_and_loss():
    torch.manual_seed(0)
    config = tiny_model(n_src_vocab=20, **GPT2_CHOICES)  # d_model 32, d_ff 64, one layer, GELU
    model = MoEGPT(config, 0.02, n_experts=4, top_k=2, d_expert=32, aux_loss_coeff=0.5)
    d, e, f = 32, 4, 32
    # Each GELU expert is two matrices, d x f and f x d; the router is e x d.
    experts = e * 2 * d * f
    assert sum(p.numel() for p in model.encoder.layers[0].feed_forward.parameters()) == experts + e * d
    total = sum(p.numel() for p in model.parameters())
    assert active_parameters(model) == total - (e - 2) * 2 * d * f
    # In training the loss is the cross-entropy plus the aux loss; in evaluation the cross-entropy alone.
    history = []
    loss_fn = moe_loss(history)
    inputs, targets = torch.randint(0, 20, (2, 8)), torch.randint(0, 20, (2, 8))
    layer = model.encoder.layers[0].feed_forward.moe
    caught = []
    hook = layer.register_forward_hook(lambda m, a, out: caught.append(out[1]))
    loss = loss_fn(model, (inputs, targets))
    hook.remove()
    cross_entropy = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
    torch.testing.assert_close(loss, cross_entropy + caught[0].aux_loss)
    assert len(history) == 1 and history[0][0].shape == (1, 4) and history[0][0].sum() == 2 * 16
    model.eval()
    torch.testing.assert_close(loss_fn(model, (inputs, targets)), cross_entropy)
    assert len(history) == 1
    # The hooks are gone after each call.
    assert all(not m._forward_hooks for m in model.modules() if isinstance(m, MoE))
    # The experts' weights are decayed, like the dense network's matrices.
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert id(layer.experts.w1) in decayed and id(layer.experts.w2) in decayed
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_benchmark_smoke():
    done = run([str(REPO / "benchmarks" / "moe.py"), "--tiny", "--rounds", "2", "--warmup", "1"])
    assert done.returncode == 0, done.stderr
    for name in ("dense SwiGLU", "labml_nn MoE (dropless)", "labml_nn MoE (capacity 1.25)", "HF MixtralSparseMoeBlock"):
        assert name in done.stdout
