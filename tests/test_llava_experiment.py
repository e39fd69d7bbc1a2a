"""The LLaVA experiment: its image set (deterministic, held-out pairs kept out of training, shapes drawn where
the caption says), its sequences (labels only on the answer), stage 1's freezing (only the projector's parameters
change in training), the benchmark's smoke run, and a smoke run of the whole experiment in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from labml_nn.experiments.data import CharTokenizer
from labml_nn.experiments.distributed import setup
from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig
from labml_nn.transformers.experiments.llava import (COLOURS, PoolSource, caption, caption_examples, draw,
                                                     freeze_for, llava_loss, make_shapes, qa_examples, questions,
                                                     sequences)
from labml_nn.transformers.llama import ModelArgs
from labml_nn.transformers.llava import Llava, VisionConfig

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = (("red", "triangle"), ("blue", "square"))


def test_shapes_are_deterministic_and_hold_out_pairs():
    a, b = make_shapes(30, 5, HELD_OUT, test=False), make_shapes(30, 5, HELD_OUT, test=False)
    assert torch.equal(a.pixels, b.pixels) and a.scenes == b.scenes
    assert not a.unseen.any()
    assert all((c, s) not in HELD_OUT for scene in a.scenes for s, c, _ in scene)
    test = make_shapes(20, 6, HELD_OUT, test=True)
    assert int(test.unseen.sum()) == 10
    for scene, unseen in zip(test.scenes, test.unseen.tolist()):
        assert unseen == any((c, s) in HELD_OUT for s, c, _ in scene)
        assert len({s for s, _, _ in scene}) == len(scene) and len({q for _, _, q in scene}) == len(scene)


def test_drawn_shape_is_in_its_quadrant_with_its_colour():
    image = draw([("square", "blue", 3)], np.random.default_rng(0))
    # The centre of the bottom-right quadrant has the colour (scaled to [-1, 1]); the other quadrants are dark.
    np.testing.assert_allclose(image[:, 24, 24], np.array(COLOURS["blue"]) * 2 - 1, atol=1e-6)
    assert image[:, :16, :16].max() < -0.8 and image[:, :16, 16:].max() < -0.8 and image[:, 16:, :16].max() < -0.8
    assert caption([("square", "blue", 3), ("circle", "red", 0)]) == \
        "a red circle at the top left and a blue square at the bottom right"
    assert ("what colour is the square?", "blue") in questions([("square", "blue", 3)])


def test_sequences_label_only_the_answer():
    tokenizer = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ?:\n")
    ids, labels, index = sequences([(0, "describe:\n", "a b"), (1, "q?\n", "abcd")], tokenizer, 99, 4)
    assert ids.shape == labels.shape == (2, 4 + 10 + 4)
    assert torch.equal(index, torch.tensor([0, 1]))
    assert (ids[:, :4] == 99).all() and (labels[:, :4] == -100).all()
    assert tokenizer.decode(labels[0][labels[0] >= 0]) == "a b\n"
    assert tokenizer.decode(labels[1][labels[1] >= 0]) == "abcd\n"
    assert tokenizer.decode(ids[0, 4:18]) == "describe:\na b\n"


def test_stage1_changes_only_the_projector(tmp_path):
    torch.manual_seed(0)
    data = make_shapes(8, 0, HELD_OUT, test=False)
    tokenizer = CharTokenizer.from_text("".join(p + a + "\n" for _, p, a in caption_examples(data) + qa_examples(data)))
    vision = VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                          image_size=32, patch_size=8)
    model = Llava(vision, ModelArgs(dim=16, n_layers=1, n_heads=2, vocab_size=tokenizer.n_vocab + 1, max_seq_len=128),
                  image_token_id=tokenizer.n_vocab)
    ids, labels, index = sequences(caption_examples(data), tokenizer, tokenizer.n_vocab, vision.num_patches)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    freeze_for(model, "stage1")
    config = TrainerConfig(max_steps=2, batch_size=4, warmup=1, eval_every=0, eval_iters=1, checkpoint_every=0,
                           weight_decay=0.1)
    Trainer(model, config, Run(tmp_path, setup("cpu")), loss_fn=llava_loss).fit(
        PoolSource(ids, labels, data.pixels[index]))
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed == {name for name in before if name.startswith("projector.")}


def test_benchmark_smoke():
    pytest.importorskip("transformers")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "llava.py"), "--tiny", "--rounds", "1"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "speedup" in done.stdout and "vision tower calls per generation: ours 1, HF 1" in done.stdout


def test_experiment_smoke(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "labml_nn.transformers.llava", "--preset", "tiny", "--device", "cpu",
                           "--out", str(tmp_path)], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert json.loads(done.stdout) == result
    assert list(result["accuracy"]) == ["stage0", "lm", "stage1", "stage2"]
    assert set(result["accuracy"]["stage2"]) == {"caption_exact", "answer_accuracy"}
    for name in ("config.json", "metrics.jsonl", "loss.png", "answers.png", "stage1/checkpoint.pt"):
        assert (tmp_path / name).is_file(), name
