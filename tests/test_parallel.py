"""Tensor and sequence parallelism (labml_nn.transformers.parallel) against one process, in 2 and 4 gloo processes."""
import json

import pytest
import torch

import parallel_workers as workers


def read(out_dir, name: str, world_size: int) -> list[dict]:
    return [json.loads((out_dir / f"{name}.{rank}.json").read_text()) for rank in range(world_size)]


def check_dropout(result: dict) -> None:
    """Dropout 0.3 in training mode: what must be replicated is identical on the processes of the group (the residual
    stream of the plain split, the embeddings' masks, the embeddings' gradient), the masks on each process's own heads,
    hidden units (and sequence positions) differ, and a rerun with the same seed draws everything again, as does a
    layer recomputed by activation checkpointing."""
    other, rerun = result["other process"], result["rerun"]
    assert all(value == 0 for value in rerun.values()), result
    assert other["embedding"] == 0 and other["embedding_grad"] == 0, result
    if not result["sequence_parallel"]:
        assert other["residual"] == 0 and other["residual_dropout"] == 0, result
    else:
        # positions of different processes, dropped out independently: about 2 * 0.3 * 0.7 of the masks differ
        assert other["residual_dropout"] > 0.2, result
    assert other["hidden"] > 0.2 and other["attention_rng"] == 1, result
    assert 0.2 < result["dropped"] < 0.4
    assert result["recomputed"] < 1e-6, result


@pytest.mark.parametrize("world_size", [2, 4])
def test_written_out_and_dtensor_splits_equal_one_process(tmp_path, world_size):
    """The written-out split in 2 and 4 processes against one process; in the 2-process run also
    `tensor_parallelize` (DTensor) against one process and against the written-out split, and both splits' dropout."""
    workers.spawn(workers.tensor_parallel_worker, world_size, str(tmp_path), timeout=120)
    cases = {f"{name}/sp={sp}" for name in ("gpt", "llama") for sp in (False, True)}
    if world_size == 2:
        cases |= {f"{case}/dtensor vs {other}" for case in set(cases) for other in ("one process", "written out")}
    for rank, result in enumerate(read(tmp_path, "tp", world_size)):
        dropout = {case: result.pop(case) for case in list(result) if case.startswith("dropout/")}
        assert len(dropout) == (4 if world_size == 2 else 0)
        for case in dropout.values():
            check_dropout(case)
        assert set(result) == cases
        for case, diff in result.items():
            assert diff["shapes"], (rank, case)
            for key in ("logits", "loss", "grads"):
                assert diff[key] < 1e-5, (rank, case, key, diff)


def test_bad_splits_are_clear_errors():
    import torch.distributed as dist
    from labml_nn.transformers.parallel import ColumnParallelLinear, RowParallelLinear
    from labml_nn.transformers.parallel.training import device_mesh

    with pytest.raises(ValueError, match="divisible by the tensor-parallel size 3"):
        ColumnParallelLinear(torch.nn.Linear(4, 8), 0, 3)
    with pytest.raises(ValueError, match="divisible by the tensor-parallel size 3"):
        RowParallelLinear(torch.nn.Linear(8, 4), 0, 3, None)
    # --fsdp on one process (the trainer's first step; the message reaches the command line's error output)
    with pytest.raises(ValueError, match="--fsdp shards over the data-parallel processes"):
        device_mesh(1, tp=1, fsdp=True)
    assert not dist.is_initialized()


# ## The plan calculator

def test_plan_counts_a_real_models_parameters_and_optimizer_states():
    from labml_nn.transformers.llama import ModelArgs, Transformer
    from labml_nn.transformers.parallel.plan import Layout, ModelShape, Precision, model_state_bytes

    args = ModelArgs(dim=64, n_layers=3, n_heads=8, n_kv_heads=2, vocab_size=37, multiple_of=16, max_seq_len=16)
    model = Transformer(args)
    shape = ModelShape("tiny", args.dim, args.n_layers, args.n_heads, args.n_kv_heads,
                       model.layers[0].feed_forward.w1.out_features, args.vocab_size)
    n = sum(p.numel() for p in model.parameters())
    assert shape.parameters() == n
    # One AdamW step in float32: the moments are the optimizer state, 8 bytes per parameter
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 37, (2, 8))).sum().backward()
    optimizer.step()
    moments = sum(state[k].numel() * state[k].element_size() for state in optimizer.state.values()
                  for k in ("exp_avg", "exp_avg_sq"))
    assert moments == n * Precision().optimizer
    # The model in bfloat16 holds 2 bytes per parameter; float32 master weights and bf16 gradients as many more
    bf16_bytes = sum(p.numel() * p.element_size() for p in model.to(torch.bfloat16).parameters())
    assert bf16_bytes == n * Precision().weight
    states = model_state_bytes(shape, Layout(tp=2, pp=1, dp=4, fsdp=True, recompute=False))
    assert states == n / 2 / 4 * (2 + 2 + 4 + 8)


def test_plan_counts_a_gpt_with_tied_embeddings_and_biases():
    from labml_nn.transformers.parallel.plan import ModelShape
    model = workers.tiny_gpt()
    shape = ModelShape("gpt", 32, 2, 4, 4, 64, 23, gated=False, tied=True, biases=True)
    positions = model.embed.positional_encodings.numel()
    assert shape.parameters() == sum(p.numel() for p in model.parameters()) - positions


def test_plan_activations_are_korthikanti_formula_for_a_gpt_layer():
    from labml_nn.transformers.parallel.plan import ModelShape, layer_activation_bytes
    s, b, h, a = 128, 3, 64, 8
    shape = ModelShape("gpt", h, 1, a, a, 4 * h, 100, gated=False)
    for t in (1, 2, 4):
        tp = layer_activation_bytes(shape, s, b, t, sequence_parallel=False, flash=False, dropout=True)
        sp = layer_activation_bytes(shape, s, b, t, sequence_parallel=True, flash=False, dropout=True)
        # Korthikanti et al. (2022), equations 2, 3 and 4
        assert tp == pytest.approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t)))
        assert sp == pytest.approx(s * b * h / t * (34 + 5 * a * s / h))


def test_plan_command_line(capsys):
    from labml_nn.transformers.parallel.plan import main
    main(["--plan", "llama-3.1-8b", "--gpus", "16", "--gpu-memory", "80"])
    out = capsys.readouterr().out
    assert "llama-3.1-8b: 8.03B parameters, 16 GPUs of 80 GB" in out
    main(["--plan", "llama-3.1-405b", "--gpus", "8", "--gpu-memory", "80"])
    assert "no layout fits" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--plan", "llama-3.1-8b", "--gpus", "0"])


# ## FSDP2, FSDP2 with tensor parallelism, and sharded checkpoints across world sizes

def test_fsdp_tp_and_sharded_checkpoints_follow_one_process(tmp_path):
    # 2 processes: FSDP2, ten steps, saving a sharded checkpoint at step 5
    workers.spawn(workers.fsdp_worker, 2, str(tmp_path), timeout=120)
    for result in read(tmp_path, "fsdp", 2):
        assert result["losses"] == pytest.approx(result["reference"], abs=1e-5)
        assert result["params"] < 1e-5
    # The checkpoint loaded by 1 process (no FSDP) and by 4 (FSDP over 4); the 4 also run FSDP2 + TP on a 2 x 2 mesh
    for world_size in (1, 4):
        workers.spawn(workers.resume_worker, world_size, str(tmp_path), timeout=150)
        for result in read(tmp_path, f"resume{world_size}", world_size):
            assert result["step"] == workers.SAVE_AT
            assert result["state"] == 0.0, "model and optimizer state exactly as saved"
            assert result["state_vs_reference"] < 1e-5
            assert result["losses"] == pytest.approx(result["reference"], abs=1e-5)
            assert result["params"] < 1e-5
            if world_size == 4:
                assert result["fsdp_tp_losses"] == pytest.approx(
                    read(tmp_path, "fsdp", 2)[0]["reference"], abs=1e-5)
                assert result["fsdp_tp_params"] < 1e-5
                errors = result["errors"]
                assert "--tp 8 is larger than the number of processes (4)" in errors["tp too large"]
                assert "must be a multiple of --tp (3)" in errors["tp not dividing"]
                assert "--fsdp shards over the data-parallel processes" in errors["fsdp alone"]
                assert "number of attention heads (2) must be divisible by the tensor-parallel size (4)" \
                    in errors["heads"]
                assert "checkpoint of another model" in errors["other model"]
                check_accumulation(result["accumulation"])


def check_accumulation(results: dict) -> None:
    """One step with grad_accum micro-batches equals one process's step on the whole batch, and the gradients cross
    the data-parallel processes only after the last micro-batch: FSDP2 reduce-scatters once per FSDP unit (the two
    layers and the root), tensor parallelism over two rows without FSDP all-reduces once."""
    for name, result in results.items():
        assert result["grads"] < 1e-5 and result["params"] < 1e-5, (name, result)
        for counts in result["before_each_micro_batch"]:
            assert counts == {"reduce_scatter": 0, "dp_all_reduce": 0}, (name, result)
        expected = ({"reduce_scatter": 3, "dp_all_reduce": 0} if name != "tp+dp" else
                    {"reduce_scatter": 0, "dp_all_reduce": 1})
        assert result["after_step"] == expected, (name, result)
        assert result["fsdp_units"] == (0 if name == "tp+dp" else 3)
    assert len(results["fsdp"]["before_each_micro_batch"]) == 4


# ## Activation checkpointing

@pytest.mark.parametrize("build", [workers.tiny_gpt, workers.tiny_llama])
def test_activation_checkpointing_same_gradients(build):
    from labml_nn.transformers.parallel.training import checkpoint_layers
    tokens, targets = torch.randint(0, 23, (3, 8)), torch.randint(0, 23, (3, 8))
    plain, checkpointed = build(), checkpoint_layers(build())
    for model in (plain, checkpointed):
        workers.loss_of(model, tokens, targets)[1].backward()
    names = dict(checkpointed.named_parameters())
    assert set(names) == set(dict(plain.named_parameters()))
    for name, parameter in plain.named_parameters():
        torch.testing.assert_close(names[name].grad, parameter.grad, rtol=0, atol=1e-6)


def test_activation_checkpointing_lowers_measured_peak_memory():
    import os
    import subprocess
    import sys
    from pathlib import Path
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)]), "OMP_NUM_THREADS": "1"}
    peaks = {}
    for flag in (False, True):
        out = subprocess.run([sys.executable, "-c", "import parallel_workers as w; "
                              f"print(w.peak_memory_increase({flag}))"],
                             env=env, capture_output=True, text=True, timeout=120, check=True)
        peaks[flag] = int(out.stdout.split()[-1])
    # 16 layers' activations against their inputs and one layer's: well under half of what autograd saves. The
    # process's peak is the measure that matters but depends on the allocator (on a busy machine both growths once
    # read 0, and once 181 MB against 358 MB, just over half), so it is only required to be clearly lower, and the
    # bytes autograd saves for the backward pass, counted exactly, must be under half.
    assert peaks[True] <= peaks[False], peaks
    if peaks[False] > 0:
        assert peaks[True] < 0.75 * peaks[False], peaks
    from parallel_workers import saved_activation_bytes
    saved = {flag: saved_activation_bytes(flag) for flag in (False, True)}
    assert saved[True] < 0.5 * saved[False], saved


# ## The trainer: --tp, --fsdp, --activation-checkpointing and sharded checkpoints, from the command line

TINY = ["--device", "cpu", "--n-layers", "1", "--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--max-len", "16",
        "--context", "16", "--dropout", "0", "--batch-size", "4", "--warmup", "0", "--lr", "3e-3", "--min-lr", "3e-3",
        "--log-every", "2", "--eval-every", "3", "--eval-iters", "2", "--checkpoint-every", "3",
        "--sample-tokens", "5"]


def run_gpt(*args, processes: int = 1, crash_on_save: int = 0):
    """The GPT experiment's command line; with `crash_on_save=n`, every process dies in the middle of its n-th save."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    module = ["-m", "parallel_workers", "crash-on-save", str(crash_on_save)] if crash_on_save else ["-m"]
    return subprocess.run([sys.executable, *launcher, *module, "labml_nn.transformers.gpt", *args], cwd=repo,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")])},
                          capture_output=True, text=True, timeout=180)


def shard_directories(run) -> list[str]:
    return sorted(path.name for path in run.iterdir() if path.is_dir() and path.name.endswith(".dcp"))


def losses(out) -> list[tuple]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("train_loss"), r.get("val_loss")) for r in records]


def test_trainer_tp_fsdp_checkpointing_and_resharded_resume(tmp_path):
    from labml_nn.experiments.char_lm import load_run
    from labml_nn.experiments.trainer import load_checkpoint
    one, tp, fsdp = tmp_path / "one", tmp_path / "tp", tmp_path / "fsdp"
    assert run_gpt(*TINY, "--max-steps", "9", "--out", str(one)).returncode == 0
    # Tensor parallelism over 2 processes, which both die in the middle of the second save (step 6), after writing
    # their shards and before the directory's metadata
    done = run_gpt(*TINY, "--max-steps", "9", "--tp", "2", "--out", str(tp), processes=2, crash_on_save=2)
    assert done.returncode != 0, done.stderr[-3000:]
    state = load_checkpoint(tp)
    assert state["step"] == 3 and (tp / state["shards"] / ".metadata").is_file()
    [cut_short] = [name for name in shard_directories(tp) if name != state["shards"]]
    assert cut_short.startswith("checkpoint-6-") and not (tp / cut_short / ".metadata").exists()
    # The previous checkpoint is whole: the run continues from step 3, resharded onto one process without tensor
    # parallelism; its (unsharded) checkpoints leave no shard directory behind
    done = run_gpt("--resume", str(tp), "--tp", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert shard_directories(tp) == [] and not load_checkpoint(tp)["sharded"] and load_checkpoint(tp)["step"] == 9
    # FSDP2 with activation checkpointing, saved at steps 3 and 6, each into a new directory: only the one that
    # checkpoint.pt names is left
    done = run_gpt(*TINY, "--max-steps", "6", "--fsdp", "--activation-checkpointing", "--out", str(fsdp), processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert shard_directories(fsdp) == [load_checkpoint(fsdp)["shards"]]
    assert shard_directories(fsdp)[0].startswith("checkpoint-6-")
    reference = losses(one)
    for run, expected in ((tp, reference), (fsdp, reference[:len(losses(fsdp))])):
        got = losses(run)
        assert [r[0] for r in got] == [r[0] for r in expected]
        for (_, *a), (_, *b) in zip(got, expected):
            assert a == pytest.approx(b, abs=1e-5)
    # The sharded run's trained model, reloaded for use on one process, is the one the run ended with
    trained, resumed = load_run(fsdp), load_run(tp)
    assert trained.step == 6 and resumed.step == 9
    assert trained.generate("a", max_new_tokens=3, temperature=0)
    # A run of the layout before shard directories were named (one checkpoint.dcp, checkpoint.pt naming none) loads
    state = torch.load(fsdp / "checkpoint.pt", weights_only=True)
    (fsdp / state.pop("shards")).rename(fsdp / "checkpoint.dcp")
    torch.save(state, fsdp / "checkpoint.pt")
    for name, parameter in load_run(fsdp).model.named_parameters():
        assert torch.equal(parameter, dict(trained.model.named_parameters())[name]), name
    # After 9 Adam steps of lr 3e-3 the weights agree to a few hundredths of one step: Adam divides each gradient
    # by its running size, so rounding differences in gradients near zero move a weight by a fraction of the rate
    single = dict(load_run(one).model.named_parameters())
    for name, parameter in resumed.model.named_parameters():
        torch.testing.assert_close(parameter, single[name], rtol=0, atol=1e-4)


# ## The benchmark's counted collectives, with tiny sizes

def test_benchmark_counts_equal_the_formula(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "parallel.json"
    done = subprocess.run([sys.executable, str(repo / "benchmarks" / "parallel.py"), "--batch", "2", "--seq", "8",
                           "--rounds", "1", "--json", str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ratio TP=2 / 1" in done.stdout
    result = json.loads(out.read_text())
    for split in ("sp=False", "sp=True"):
        assert result[split]["counted"] == result[split]["formula"], split
    # 4 layers: the plain split's 16 all-reduces of [2, 8, 128] float32, as the page's table says for its batch
    assert result["sp=False"]["counted"] == {"all_reduce": [16, 16 * 2 * 8 * 128 * 4]}
