"""What happens to a run around its training: stop signals wherever they arrive, short runs, failed runs, resume
edge cases, reloading a finished run, TensorBoard logging and the Noam schedule. The experiments run in
subprocesses, as a user runs them."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from labml_nn.experiments.char_lm import load_run
from labml_nn.experiments.data import tiny_shakespeare_path
from labml_nn.experiments.trainer import CheckpointError, Noam, TrainerConfig, load_checkpoint

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("single_thread")

def tiny_gpt(**changes) -> list[str]:
    """The options of a GPT that trains in a blink, with `changes` to them."""
    options = {"device": "cpu", "n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64, "max_len": 16, "context": 16,
               "dropout": 0, "batch_size": 4, "warmup": 0, "lr": 3e-3, "min_lr": 3e-3, "log_every": 5,
               "eval_every": 10, "eval_iters": 2, "checkpoint_every": 0, "sample_tokens": 20, **changes}
    return [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


TINY_GPT = tiny_gpt()


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run_module(module, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", module, *args], env=env(), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(directory: Path) -> dict:
    """Every file under `directory` with its bytes and modification time."""
    return {p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


# ## Stop signals, wherever they arrive
#
# An experiment through the real command line whose evaluations (or one chosen training step) are slow: each
# evaluation batch after `slow_eval_after` training steps sleeps half a second, so that an evaluation of 100
# batches takes 50 s. The script writes a marker file when it enters the slow part, so that the test signals it
# exactly there.
SLOW_EXPERIMENT = textwrap.dedent('''
    import sys, time
    from dataclasses import dataclass, field
    from pathlib import Path
    import torch
    from torch import nn
    from labml_nn.experiments.cli import run_experiment
    from labml_nn.experiments.data import BlockSource
    from labml_nn.experiments.trainer import Run, Trainer, TrainerConfig, language_model_loss

    MARKER = Path(sys.argv[1])

    @dataclass
    class Slow:
        trainer: TrainerConfig = field(default_factory=TrainerConfig)
        slow_step: int = -1
        """The training step that takes 60 s (-1: none)."""
        slow_eval_after: int = 0
        """Evaluations after this many steps are slow."""

    def train(config: Slow, run: Run) -> dict:
        model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 10))
        steps = [0]

        def loss(model, batch):
            if not model.training:
                if steps[0] >= config.slow_eval_after:
                    MARKER.write_text(f"evaluating after {steps[0]} steps")
                    time.sleep(0.5)
            else:
                steps[0] += 1
                if steps[0] == config.slow_step:
                    MARKER.write_text(f"step {steps[0]}")
                    time.sleep(60)
            return language_model_loss(model, batch)

        data = torch.arange(1000) % 10
        trainer = Trainer(model, config.trainer, run, loss_fn=loss)
        return trainer.fit(BlockSource(data, 8), BlockSource(data, 8))

    run_experiment("slow", Slow, train, presets={"default": Slow}, argv=sys.argv[2:])
''')


def start_slow(tmp_path: Path, out: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    script, marker = tmp_path / "slow.py", tmp_path / "marker"
    script.write_text(SLOW_EXPERIMENT)
    process = subprocess.Popen([sys.executable, str(script), str(marker), "--device", "cpu", "--out", str(out),
                                "--batch-size", "2", "--warmup", "0", "--log-every", "1", "--checkpoint-every", "0",
                                *args], env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    return process, marker


def wait_for(marker: Path, text: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker.exists() and marker.read_text().startswith(text):
            return
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.communicate()[1]}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"never reached {text!r}")


def test_sigterm_during_an_evaluation_stops_within_seconds_with_the_last_step_saved(tmp_path):
    # The step-5 evaluation is 100 slow batches (50 s); the signal comes at its first batch.
    out = tmp_path / "run"
    process, marker = start_slow(tmp_path, out, "--max-steps", "100", "--eval-every", "5", "--eval-iters", "100",
                                 "--slow-eval-after", "5")
    wait_for(marker, "evaluating after 5 steps", process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    # Within seconds (the evaluation alone would take 50 s more); the bound leaves room for a busy machine.
    assert time.monotonic() - signalled < 10, "the stop took longer than a cluster's grace period allows"
    assert process.returncode == 130, stderr
    assert load_checkpoint(out)["step"] == 5
    assert f"--resume {out}" in stderr

    # Resumed, the run evaluates step 5 again and goes on: its metrics are an uninterrupted run's.
    args = ["--device", "cpu", "--batch-size", "2", "--warmup", "0", "--log-every", "1", "--checkpoint-every", "0",
            "--max-steps", "100", "--eval-every", "5", "--eval-iters", "100", "--slow-eval-after", "1000000"]
    script, marker = tmp_path / "slow.py", tmp_path / "marker"
    resumed = subprocess.run([sys.executable, str(script), str(marker), "--resume", str(out), "--slow-eval-after",
                              "1000000"], env=env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([sys.executable, str(script), str(marker), *args, "--out", str(tmp_path / "whole")],
                           env=env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics(out) == metrics(tmp_path / "whole")


def test_a_second_signal_quits_at_once_without_finishing_the_step(tmp_path):
    out = tmp_path / "run"
    process, marker = start_slow(tmp_path, out, "--max-steps", "10", "--eval-every", "0", "--slow-step", "3")
    wait_for(marker, "step 3", process)
    process.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    assert process.poll() is None, "the first signal must let the step finish"
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    # The step would go on sleeping for a minute.
    assert time.monotonic() - signalled < 10
    assert process.returncode == 130, stderr
    assert "Second signal" in stderr
    # Quitting at once writes nothing: the step in flight never finished, and no checkpoint was due before it.
    assert not (out / "checkpoint.pt").exists()


def test_a_stop_during_the_first_evaluation_leaves_no_run_behind(tmp_path):
    out = tmp_path / "run"
    process, marker = start_slow(tmp_path, out, "--max-steps", "1000", "--eval-every", "100",
                                 "--eval-iters", "1000")
    wait_for(marker, "evaluating after 0 steps", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Nothing was saved" in stderr
    assert not out.exists()


# ## Short runs: evaluation and the GPU preset on a CPU
def test_a_run_shorter_than_eval_iters_evaluates_on_max_steps_batches(tmp_path):
    from labml_nn.experiments.data import BlockSource
    from labml_nn.experiments.distributed import setup
    from labml_nn.experiments.trainer import Run, Trainer, language_model_loss

    calls = {"train": 0, "eval": 0}

    def counting_loss(model, batch):
        calls["train" if model.training else "eval"] += 1
        return language_model_loss(model, batch)

    model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 10))
    config = TrainerConfig(max_steps=3, batch_size=2, warmup=0, eval_every=250, eval_iters=200, checkpoint_every=0)
    data = torch.arange(500) % 10
    Trainer(model, config, Run(tmp_path, setup("cpu")), loss_fn=counting_loss).fit(BlockSource(data, 4),
                                                                                     BlockSource(data, 4))
    # Step-0 and final validation, then the final training loss: three evaluations of 3 batches, not of 200.
    assert calls == {"train": 3, "eval": 3 * 3}


def test_the_gpu_preset_on_a_cpu_names_the_cpu_preset(tmp_path):
    done = run_module("labml_nn.transformers.gpt", *TINY_GPT, "--max-steps", "2", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert "preset 'default' is sized for a GPU" in done.stderr and "--preset baby" in done.stderr
    baby = run_module("labml_nn.transformers.gpt", "--preset", "baby", *TINY_GPT, "--max-steps", "2",
                      "--out", str(tmp_path / "b"))
    assert baby.returncode == 0, baby.stderr
    assert "sized for a GPU" not in baby.stderr


# ## Failed runs and the data path
def test_a_failed_run_leaves_no_directory_behind(tmp_path):
    out = tmp_path / "run"
    done = run_module("labml_nn.transformers.gpt", *TINY_GPT, "--max-steps", "2", "--out", str(out),
                      "--data-dir", str(tmp_path / "missing"))
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_the_data_variable_may_name_the_file_itself(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("LABML_NN_DATA", str(data_dir / "tiny_shakespeare.txt"))
    assert tiny_shakespeare_path() == data_dir / "tiny_shakespeare.txt"
    monkeypatch.setenv("LABML_NN_DATA", str(tmp_path))
    with pytest.raises(Exception, match=f"has no tiny_shakespeare.txt, so {tmp_path / 'tiny_shakespeare.txt'}"):
        tiny_shakespeare_path()


# ## Resume edge cases
#
# One finished tiny GPT run, copied and damaged in each way; every error is one paragraph, not a traceback, and
# leaves the directory exactly as it was.
@pytest.fixture(scope="module")
def finished_gpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("lifecycle") / "gpt"
    done = run_module("labml_nn.transformers.gpt", *TINY_GPT, "--max-steps", "10", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def copy_run(source: Path, target: Path) -> Path:
    import shutil
    shutil.copytree(source, target)
    return target


def resume_fails(run_dir: Path, module: str = "labml_nn.transformers.gpt") -> str:
    before = snapshot(run_dir)
    done = run_module(module, "--resume", str(run_dir), "--max-steps", "20")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert snapshot(run_dir) == before, "the run directory was changed"
    return done.stderr


def test_resume_of_a_truncated_checkpoint_says_so(finished_gpt, tmp_path):
    run_dir = copy_run(finished_gpt, tmp_path / "run")
    checkpoint = run_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:len(checkpoint.read_bytes()) // 2])
    message = resume_fails(run_dir)
    assert "damaged or truncated" in message and str(checkpoint) in message


def test_resume_of_a_garbage_checkpoint_gives_no_unsafe_advice(finished_gpt, tmp_path):
    run_dir = copy_run(finished_gpt, tmp_path / "run")
    # A pickle that would run code when loaded with weights_only=False.
    import pickle
    (run_dir / "checkpoint.pt").write_bytes(pickle.dumps(print))
    message = resume_fails(run_dir)
    assert "could not be read" in message
    assert "weights_only=False" not in message
    with pytest.raises(CheckpointError):
        load_checkpoint(run_dir)


def test_resume_of_a_directory_without_a_checkpoint_does_not_retrain_in_it(finished_gpt, tmp_path):
    run_dir = copy_run(finished_gpt, tmp_path / "run")
    (run_dir / "checkpoint.pt").unlink()
    assert "holds no checkpoint.pt" in resume_fails(run_dir)
    assert "no run there" in resume_fails(tmp_path)


def test_resume_with_another_experiment_names_the_right_command(finished_gpt, tmp_path):
    run_dir = copy_run(finished_gpt, tmp_path / "run")
    message = resume_fails(run_dir, "labml_nn.transformers.rope")
    assert "run of the 'gpt' experiment" in message
    assert f"python -m labml_nn.transformers.gpt --resume {run_dir}" in message


# ## Reloading a finished run
#
# The reloaded model must reproduce the sample the experiment drew at the end of its training, with the same
# temperature and seed, and the same logits as the checkpoint's weights in a model built by hand.
def test_load_run_returns_the_trained_model_ready_to_generate(finished_gpt):
    trained = load_run(finished_gpt)
    result = json.loads((finished_gpt / "result.json").read_text())
    assert trained.step == 10 and not trained.model.training
    assert trained.generate("\n", max_new_tokens=20, temperature=0.8, seed=0) == result["sample"]

    from labml_nn.transformers.configs import TransformerConfigs
    from labml_nn.transformers.gpt import GPT
    model = GPT(TransformerConfigs(n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0, max_len=16,
                                   n_src_vocab=trained.tokenizer.n_vocab, positional="learned",
                                   ffn_activation="gelu", scale_embeddings=False))
    model.load_state_dict(load_checkpoint(finished_gpt)["model"])
    tokens = trained.tokenizer.encode("ROMEO:")[None]
    torch.testing.assert_close(trained.model(tokens), model.eval()(tokens), rtol=0, atol=0)


@pytest.mark.parametrize("module", ["labml_nn.transformers.experiments", "labml_nn.transformers.experiments.gpt"])
def test_the_pages_load_run_snippets_run(finished_gpt, module):
    import importlib
    import re

    blocks = [block for block in re.findall(r"```python\n(.*?)```", importlib.import_module(module).__doc__, re.DOTALL)
              if "load_run(" in block]
    assert len(blocks) == 1
    code = re.sub(r'load_run\("[^"]*"\)', f"load_run({str(finished_gpt)!r})", blocks[0])
    namespace: dict = {}
    exec(compile(code, module, "exec"), namespace)
    assert namespace["trained"].step == 10


def test_load_run_of_a_comparison_takes_one_variant(tmp_path):
    out = tmp_path / "rope"
    done = run_module("labml_nn.transformers.rope", "--preset", "tiny", "--device", "cpu", "--out", str(out))
    assert done.returncode == 0, done.stderr
    trained = load_run(out / "rope")
    assert trained.context == json.loads((out / "config.json").read_text())["experiment"]["context"]
    assert len(trained.generate("A", max_new_tokens=5)) == 6
    with pytest.raises(ValueError, match="load one of their subdirectories"):
        load_run(out)


# ## TensorBoard
def test_tensorboard_receives_every_logged_metric(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    done = run_module("labml_nn.transformers.gpt", *TINY_GPT, "--max-steps", "10", "--out", str(out),
                      "--tensorboard")
    assert done.returncode == 0, done.stderr
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "val_loss", "lr"):
        logged = {r["step"]: r[key] for r in records if key in r}
        seen = {event.step: event.value for event in events.Scalars(key)}
        assert logged and sorted(seen) == sorted(logged), key
        for step, value in logged.items():
            assert seen[step] == pytest.approx(value, rel=1e-6), (key, step)


# ## The Noam schedule
def test_noam_schedule_follows_the_paper(tmp_path):
    warmup, d_model = 10, 64
    schedule = Noam(warmup, d_model)
    for step in (0, 1, 5, 9, 10, 50, 1000):
        t = step + 1
        # The paper's formula, written as its two cases.
        expected = (t / warmup ** 1.5 if t < warmup else 1 / math.sqrt(t)) / math.sqrt(d_model)
        assert schedule(step) == pytest.approx(expected, rel=1e-12)
    values = [schedule(step) for step in range(100)]
    assert max(range(100), key=values.__getitem__) == warmup - 1
    assert values[warmup - 1] == pytest.approx(1 / math.sqrt(d_model * warmup))
    with pytest.raises(ValueError, match="schedule"):
        TrainerConfig(schedule="linear")
    with pytest.raises(ValueError, match="warmup"):
        TrainerConfig(schedule="noam", warmup=0)


def test_noam_through_the_trainer_and_resume(tmp_path):
    args = tiny_gpt(schedule="noam", noam_d_model=32, warmup=4, lr=0.5, log_every=1, checkpoint_every=5)
    whole = run_module("labml_nn.transformers.gpt", *args, "--max-steps", "12", "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    first = run_module("labml_nn.transformers.gpt", *args, "--max-steps", "5", "--out", str(tmp_path / "split"))
    assert first.returncode == 0, first.stderr
    resumed = run_module("labml_nn.transformers.gpt", "--resume", str(tmp_path / "split"), "--max-steps", "12")
    assert resumed.returncode == 0, resumed.stderr
    rates = {}
    for name in ("whole", "split"):
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        rates[name] = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert rates["split"] == rates["whole"]
    for step, lr in rates["whole"].items():
        t = step  # the rate of step `step` is the schedule's after step - 1 steps, t = step
        assert lr == pytest.approx(0.5 / math.sqrt(32) * min(t ** -0.5, t * 4 ** -1.5), rel=1e-9)
