"""The experiment machinery: data loading (offline), the trainer (schedule, accumulation, exact resume,
Ctrl-C, NaN guard, safe checkpoints), the command line, and the GPT and configs experiments end to end
in subprocesses, including two gloo processes under torchrun."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from labml_nn.experiments import data as data_module
from labml_nn.experiments.cli import config_from_dict
from labml_nn.experiments.data import (TINY_SHAKESPEARE_SHA256, BlockSource, CharTokenizer, DataUnavailableError,
                                       load_tiny_shakespeare, tiny_shakespeare_path)
from labml_nn.experiments.distributed import setup
from labml_nn.experiments.trainer import (NonFiniteLossError, Run, Trainer, TrainerConfig, TrainingInterrupted,
                                          atomic_torch_save, build_optimizer, language_model_loss, load_checkpoint)

REPO = Path(__file__).resolve().parent.parent

# Tiny models run far faster on one thread, and a busy machine makes several threads wait on each other.
pytestmark = pytest.mark.usefixtures("single_thread")


# ## Data


def test_local_copy_tokenizer_split_and_blocks(data_dir):
    text = (data_dir / "tiny_shakespeare.txt").read_text()
    data = load_tiny_shakespeare(data_dir)
    assert data.tokenizer.n_vocab == len(set(text)) == 65
    assert len(data.train) == int(0.9 * len(text)) and len(data.train) + len(data.val) == len(text)
    assert data.tokenizer.decode(data.train[:500]) == text[:500]
    assert data.tokenizer.decode(data.val[-500:]) == text[-500:]
    x, y = BlockSource(data.train, 32).sample(torch.Generator().manual_seed(1), 16)
    assert x.shape == y.shape == (16, 32)
    for row_x, row_y in zip(x, y):
        block = data.tokenizer.decode(row_x) + data.tokenizer.decode(row_y[-1:])
        assert block in text[:len(data.train)]
        assert torch.equal(row_x[1:], row_y[:-1])


def test_tokenizer_round_trip_and_errors(tmp_path):
    tokenizer = CharTokenizer.from_text("hello world")
    assert tokenizer.chars == " dehlorw"
    tokenizer.save(tmp_path / "t.json")
    loaded = CharTokenizer.load(tmp_path / "t.json")
    assert loaded.decode(loaded.encode("hello")) == "hello"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.encode("hello!")


def test_download_is_checked_cached_and_written_once(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("LABML_NN_DATA", raising=False)
    cache = tmp_path / "cache"
    path = tiny_shakespeare_path(cache_dir=cache, url=(data_dir / "tiny_shakespeare.txt").as_uri())
    assert path == cache / "tiny_shakespeare.txt"
    assert data_module.sha256_of(path.read_bytes()) == TINY_SHAKESPEARE_SHA256
    assert [p.name for p in cache.iterdir()] == ["tiny_shakespeare.txt"]
    # Once cached, no download is attempted: an unreachable address would fail.
    assert tiny_shakespeare_path(cache_dir=cache, url="http://127.0.0.1:9/input.txt") == path


def test_offline_without_copy_fails_at_once_saying_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv("LABML_NN_DATA", raising=False)
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as error:
        tiny_shakespeare_path(cache_dir=tmp_path, url="http://127.0.0.1:9/input.txt")
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert str(tmp_path / "tiny_shakespeare.txt") in message
    assert "--data-dir" in message and "LABML_NN_DATA" in message
    assert not (tmp_path / "tiny_shakespeare.txt").exists()

    monkeypatch.setenv("LABML_NN_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataUnavailableError, match=str(tmp_path / "empty" / "tiny_shakespeare.txt")):
        tiny_shakespeare_path()


def test_checksum_mismatch_saves_nothing_and_a_corrupt_cache_is_replaced(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("LABML_NN_DATA", raising=False)
    good = (data_dir / "tiny_shakespeare.txt").read_bytes()
    corrupt = tmp_path / "corrupt.txt"
    corrupt.write_bytes(good[:-1] + b"?")
    cache = tmp_path / "cache"
    with pytest.raises(DataUnavailableError, match="SHA-256"):
        tiny_shakespeare_path(cache_dir=cache, url=corrupt.as_uri())
    assert not cache.exists() or not any(cache.iterdir())

    cache.mkdir(exist_ok=True)
    (cache / "tiny_shakespeare.txt").write_bytes(good[:1000])
    path = tiny_shakespeare_path(cache_dir=cache, url=(data_dir / "tiny_shakespeare.txt").as_uri())
    assert path.read_bytes() == good


# ## Trainer, on a stand-in model


class TinyLM(nn.Module):
    """Embedding, dropout, linear: enough to exercise every part of the trainer."""

    def __init__(self, n_vocab: int, d: int = 16, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(n_vocab, d)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d, n_vocab)

    def forward(self, x):
        return self.out(self.dropout(torch.tanh(self.embed(x))))


@pytest.fixture(scope="module")
def shakespeare():
    return load_tiny_shakespeare(os.environ["LABML_NN_DATA"])


def train_tiny(shakespeare, out, config, *, dropout=0.0, resume=False, loss_fn=language_model_loss):
    torch.manual_seed(0)
    model = TinyLM(shakespeare.tokenizer.n_vocab, dropout=dropout)
    run = Run(Path(out), setup("cpu"), seed=3, resume=resume, config={"note": "tiny"})
    trainer = Trainer(model, config, run, loss_fn=loss_fn, extra_state={"tokenizer": shakespeare.tokenizer.to_dict()})
    result = trainer.fit(BlockSource(shakespeare.train, 16), BlockSource(shakespeare.val, 16))
    return trainer, result


def metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
            for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]


SMALL = dict(max_steps=40, batch_size=8, eval_every=10, eval_iters=2, log_every=5, checkpoint_every=10, warmup=8,
             lr=1e-2, min_lr=1e-3)


def test_warmup_then_cosine_schedule(shakespeare, tmp_path):
    config = TrainerConfig(**{**SMALL, "log_every": 1, "eval_every": 15})
    _, result = train_tiny(shakespeare, tmp_path, config)
    records = metrics(tmp_path)
    logged = {r["step"]: r["lr"] for r in records if "lr" in r}
    # Evaluations at 0, 15, 30 and after the last step; the result's validation loss is the last one.
    assert [r["step"] for r in records if "val_loss" in r] == [0, 15, 30, 40]
    assert result["val_loss"] == records[-1]["val_loss"]
    for step in range(1, 41):
        t = step - 1  # the learning rate of step `step` is the schedule's value after `t` steps
        if t < 8:
            expected = 1e-2 * (t + 1) / 8
        else:
            expected = 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * (t - 8) / 32))
        assert logged[step] == pytest.approx(expected, rel=1e-9)


def test_gradient_accumulation_matches_one_big_batch(shakespeare, tmp_path):
    _, whole = train_tiny(shakespeare, tmp_path / "a", TrainerConfig(**SMALL))
    _, accumulated = train_tiny(shakespeare, tmp_path / "b", TrainerConfig(**SMALL, grad_accum=4))
    for a, b in zip(metrics(tmp_path / "a"), metrics(tmp_path / "b"), strict=True):
        for key in ("train_loss", "val_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5)
    assert accumulated["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-5)


def test_weight_decay_only_on_linear_weights():
    model = TinyLM(10)
    optimizer = build_optimizer(model, TrainerConfig(weight_decay=0.1), torch.device("cpu"))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model.out.weight)}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_ctrl_c_writes_a_checkpoint_and_resume_is_exact(shakespeare, tmp_path):
    config = TrainerConfig(**SMALL, grad_accum=2)
    uninterrupted, expected = train_tiny(shakespeare, tmp_path / "a", config, dropout=0.2)

    # A real SIGINT in the middle of step 23: two micro-batches a step, and three evaluations (steps 0, 10, 20)
    # of two batches of two micro-batches before it.
    calls = [0]

    def loss_with_ctrl_c(model, batch):
        calls[0] += 1
        if calls[0] == 3 * 2 * 2 + 22 * 2 + 1:
            os.kill(os.getpid(), signal.SIGINT)
        return language_model_loss(model, batch)

    with pytest.raises(TrainingInterrupted, match="step 23"):
        train_tiny(shakespeare, tmp_path / "b", config, dropout=0.2, loss_fn=loss_with_ctrl_c)
    assert load_checkpoint(tmp_path / "b")["step"] == 23
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    resumed, result = train_tiny(shakespeare, tmp_path / "b", config, dropout=0.2, resume=True)
    assert metrics(tmp_path / "b") == metrics(tmp_path / "a")
    assert (result["val_loss"], result["train_loss"], result["steps"]) == \
           (expected["val_loss"], expected["train_loss"], expected["steps"])
    for p, q in zip(uninterrupted.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_checkpoint_loads_with_weights_only(shakespeare, tmp_path):
    trainer, _ = train_tiny(shakespeare, tmp_path, TrainerConfig(**SMALL))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 40 and state["config"] == {"note": "tiny"}
    assert CharTokenizer.from_dict(state["extra"]["tokenizer"]).chars == shakespeare.tokenizer.chars
    json.dumps({k: state[k] for k in ("config", "trainer", "extra")})
    model = TinyLM(shakespeare.tokenizer.n_vocab)
    model.load_state_dict(state["model"])
    for p, q in zip(model.parameters(), trainer.model.parameters()):
        assert torch.equal(p, q)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_checkpoint_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    atomic_torch_save({"step": 1, "weight": torch.arange(4.0)}, path)
    old = path.read_bytes()
    # A lambda cannot be pickled: `torch.save` fails after it has started writing the file.
    with pytest.raises(Exception, match="pickle|lambda"):
        atomic_torch_save({"step": 2, "weight": torch.zeros(1000), "hook": lambda: None}, path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
    assert torch.load(path, weights_only=True)["step"] == 1


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(shakespeare, tmp_path):
    calls = [0]

    def loss_turning_nan(model, batch):
        calls[0] += 1
        loss = language_model_loss(model, batch)
        # From step 13 on (after the step-0 and step-10 evaluations of 2 batches each)
        return loss * float("nan") if calls[0] >= 2 + 12 + 2 + 1 else loss

    with pytest.raises(NonFiniteLossError, match="last good checkpoint") as error:
        train_tiny(shakespeare, tmp_path, TrainerConfig(**SMALL), loss_fn=loss_turning_nan)
    assert "between steps 10 and 15" in str(error.value)
    state = load_checkpoint(tmp_path)
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_bad_trainer_config_names_the_field():
    with pytest.raises(ValueError, match="min_lr"):
        TrainerConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="grad_accum"):
        TrainerConfig(batch_size=12, grad_accum=5)
    with pytest.raises(ValueError, match="max_steps"):
        TrainerConfig(max_steps=0)


@dataclass
class _Inner:
    width: int = 4
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    name: str = "x"


def test_config_round_trips_through_json():
    config = _Outer(_Inner(7, (0.8, 0.9)), TrainerConfig(lr=3e-4, betas=(0.9, 0.95)), "y")
    from dataclasses import asdict
    assert config_from_dict(_Outer, json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(ValueError, match="unknown _Outer fields"):
        config_from_dict(_Outer, {"nmae": "typo"})


# ## The GPT and configs experiments, end to end in subprocesses

# A GPT small enough to train in a blink, with a constant learning rate so that `--max-steps` does not change
# the steps before it (the resumed run below sets it only after the interruption).
TINY_GPT = ["--device", "cpu", "--n-layers", "1", "--d-model", "32", "--n-heads", "2", "--d-ff", "64",
            "--max-len", "16", "--context", "16", "--dropout", "0", "--batch-size", "4", "--warmup", "0",
            "--lr", "3e-3", "--min-lr", "3e-3", "--log-every", "5", "--eval-every", "10", "--eval-iters", "2",
            "--checkpoint-every", "0", "--sample-tokens", "20"]


def subprocess_env():
    # One thread per process: the tiny models run faster, and the two processes of the DDP test do not
    # wait on each other's threads.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run_module(module, *args, launcher=(), timeout=120):
    return subprocess.run([sys.executable, *launcher, "-m", module, *args], env=subprocess_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def interrupted_and_resumed(tmp_path_factory):
    """A GPT run stopped by a real SIGINT, then resumed for 12 more steps with `--resume`."""
    out = tmp_path_factory.mktemp("gpt") / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "labml_nn.transformers.gpt", *TINY_GPT,
                                "--max-steps", "1000000", "--out", str(out)],
                               env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    # Interrupt once training has logged a step.
    deadline = time.time() + 60
    while time.time() < deadline and "train_loss" not in (
            (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"--resume {out}" in stderr
    stopped_at = load_checkpoint(out)["step"]
    assert stopped_at >= 5
    resumed = run_module("labml_nn.transformers.gpt", "--resume", str(out), "--max-steps", str(stopped_at + 12))
    assert resumed.returncode == 0, resumed.stderr
    return out, stopped_at + 12


@pytest.fixture(scope="module")
def uninterrupted(interrupted_and_resumed, tmp_path_factory):
    _, steps = interrupted_and_resumed
    out = tmp_path_factory.mktemp("gpt") / "uninterrupted"
    done = run_module("labml_nn.transformers.gpt", *TINY_GPT, "--max-steps", str(steps), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_gpt_experiment_writes_its_files(uninterrupted):
    out, stdout = uninterrupted
    for name in ("config.json", "metrics.jsonl", "loss.png", "result.json", "checkpoint.pt", "tokenizer.json",
                 "sample.txt"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    assert {"val_loss", "train_loss", "steps", "wall_s", "tokens_per_s", "sample"} <= result.keys()
    assert math.isfinite(result["val_loss"]) and len(result["sample"]) == 21
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"]["model"]["d_model"] == 32 and config["preset"] == "default"
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"val_loss"' in stdout


def test_resume_through_the_command_line_matches_an_uninterrupted_run(interrupted_and_resumed, uninterrupted):
    assert metrics(interrupted_and_resumed[0]) == metrics(uninterrupted[0])


def test_two_gloo_processes_match_one_process(uninterrupted, tmp_path):
    out, _ = uninterrupted
    steps = json.loads((out / "result.json").read_text())["steps"]
    ddp = run_module("labml_nn.transformers.gpt", *TINY_GPT, "--max-steps", str(steps), "--out", str(tmp_path),
                     launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert ddp.returncode == 0, ddp.stderr
    assert json.loads((tmp_path / "config.json").read_text())["world_size"] == 2
    single, double = metrics(out), metrics(tmp_path)
    assert [r["step"] for r in single] == [r["step"] for r in double]
    for a, b in zip(single, double):
        for key in ("train_loss", "val_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5)


def test_configs_experiment_takes_every_field_as_an_option(tmp_path):
    done = run_module("labml_nn.transformers.configs", *TINY_GPT, "--max-steps", "6", "--out", str(tmp_path),
                      "--positional", "rope", "--ffn-activation", "swiglu", "--no-pre-norm")
    assert done.returncode == 0, done.stderr
    model = json.loads((tmp_path / "config.json").read_text())["experiment"]["model"]
    assert (model["positional"], model["ffn_activation"], model["pre_norm"]) == ("rope", "swiglu", False)
    for name in ("metrics.jsonl", "loss.png", "result.json"):
        assert (tmp_path / name).is_file(), name


def test_help_lists_presets_and_flattened_options(capsys):
    from labml_nn.transformers.experiments.configs import main
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--preset", "best", "--positional", "{fixed,learned,rope,none}", "--ffn-activation",
                   "--max-steps", "--compile", "--device", "--resume", "--data-dir", "--seed", "--out"):
        assert option in text, option


def test_bad_option_value_is_a_clear_error(capsys):
    from labml_nn.transformers.experiments.gpt import main
    for args, message in ((["--context", "999", "--max-len", "64"], "context must be in [1, max_len=64], got 999"),
                          (["--preset", "baby", "--positional", "sinusoid"], "sinusoid")):
        with pytest.raises(SystemExit) as exit_:
            main(["--device", "cpu", *args])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def test_missing_extras_say_what_to_install(monkeypatch):
    from labml_nn.transformers.experiments.gpt import main
    for name in ("tyro", "tqdm", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SystemExit, match=r"pip install 'labml_nn\[experiments\]' \(missing: tyro, tqdm, matplotlib\)"):
        main(["--help"])


def test_the_example_experiment_in_the_cli_docs_runs(tmp_path, capsys):
    import labml_nn.experiments.cli as cli
    code = cli.__doc__.split("```python\n")[1].split("```")[0]
    namespace = {}
    exec(compile(code, "cli-example", "exec"), namespace)
    namespace["main"](["--preset", "short", "--device", "cpu", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["steps"] == 20 and math.isfinite(result["val_loss"])
    assert json.loads((tmp_path / "config.json").read_text())["preset"] == "short"
