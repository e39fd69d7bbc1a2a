"""GPT: causality, cached generation against a plain recomputation loop, tying, parameter count, optimiser groups,
initialisation, sampling filters, overfitting one batch, clear errors, and (on a GPU) float32 and bfloat16."""
import math
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labml_nn.transformers.configs import TransformerConfigs
from labml_nn.transformers.gpt import GPT, sample, small_init_std, top_k_filter, top_p_filter

POSITIONALS = ["learned", "fixed", "rope", "none"]


def tiny_configs(**overrides) -> TransformerConfigs:
    values = dict(n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0, n_src_vocab=23, max_len=12,
                  positional="learned", ffn_activation="gelu")
    values.update(overrides)
    return TransformerConfigs(**values)


def tiny_gpt(dtype: torch.dtype = torch.float64, **overrides) -> GPT:
    return GPT(tiny_configs(**overrides)).to(dtype).eval()


# ## Causality

@pytest.mark.parametrize("positional", POSITIONALS)
def test_gradient_of_output_t_wrt_later_inputs_is_exactly_zero(positional):
    model = tiny_gpt(positional=positional)
    seq = 10
    tokens = torch.randint(23, (2, seq))
    captured = {}

    def keep_embedding_output(module, inputs, output):
        output.retain_grad()
        captured["x"] = output

    model.embed.register_forward_hook(keep_embedding_output)
    for t in range(seq):
        model.zero_grad(set_to_none=True)
        logits = model(tokens)
        logits[:, t].sum().backward()
        # `[batch, seq, d_model]`: the gradient reaching each input position
        grad = captured["x"].grad
        assert torch.all(grad[:, t + 1:] == 0), f"output {t} depends on later positions"
        assert torch.all(grad[:, :t + 1].abs().sum(dim=-1) > 0), f"output {t} ignores an earlier position"


@pytest.mark.parametrize("positional", POSITIONALS)
def test_changing_future_tokens_leaves_earlier_logits_unchanged(positional):
    model = tiny_gpt(positional=positional)
    tokens = torch.randint(23, (3, 12))
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] + 5) % 23
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


# ## Cached generation

def generate_by_recomputing(model: GPT, tokens: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The reference: greedy decoding that runs the last `max_len` tokens through the model at every step."""
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(tokens[:, -model.max_len:])[:, -1]
            tokens = torch.cat([tokens, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return tokens


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("prompt_len, new", [(3, 6), (5, 20), (15, 6)],
                         ids=["within-context", "past-max-len", "prompt-longer-than-max-len"])
def test_cached_greedy_generation_equals_recomputation(positional, prompt_len, new):
    model = tiny_gpt(positional=positional)
    prompt = torch.randint(23, (2, prompt_len))
    expected = generate_by_recomputing(model, prompt, new)
    got = model.generate(prompt, new, temperature=0.0)
    assert got.shape == (2, prompt_len + new)
    assert torch.equal(got, expected)


def test_cached_greedy_generation_equals_recomputation_in_float32():
    model = tiny_gpt(torch.float32, positional="rope", max_len=40)
    prompt = torch.randint(23, (4, 4))
    assert torch.equal(model.generate(prompt, 50, temperature=0.0), generate_by_recomputing(model, prompt, 50))


def test_generate_feeds_one_token_per_step_until_the_context_is_full():
    # The cache is used: after the prompt, each forward pass sees one new token, until the window slides.
    model = tiny_gpt(max_len=8)
    seen = []
    model.embed.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[1]))
    model.generate(torch.randint(23, (1, 3)), 9, temperature=0.0)
    # prefill 3; positions 3..7 one at a time (5 steps fill the cache); then windows of 8 for the remaining steps
    assert seen == [3, 1, 1, 1, 1, 1, 8, 8, 8]


def test_generate_samples_with_the_global_rng_and_keeps_the_prompt():
    model = tiny_gpt()
    prompt = torch.randint(23, (3, 4))
    torch.manual_seed(1)
    a = model.generate(prompt, 10, temperature=1.0)
    torch.manual_seed(1)
    b = model.generate(prompt, 10, temperature=1.0)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :4], prompt)
    assert a.min() >= 0 and a.max() < 23
    assert torch.equal(model.generate(prompt, 0), prompt)
    # An ordinary tensor, not an inference-mode one: it can be used as training data
    assert not a.is_inference()
    model.train()
    window = a[:, -(model.max_len + 1):]
    F.cross_entropy(model(window[:, :-1]).flatten(0, 1), window[:, 1:].flatten()).backward()


def test_generate_restores_training_mode():
    model = tiny_gpt(dropout=0.1).train()
    prompt = torch.randint(23, (2, 3))
    assert torch.equal(model.generate(prompt, 15, temperature=0.0), generate_by_recomputing(model.eval(), prompt, 15))
    model.train()
    model.generate(prompt, 2)
    assert model.training


# ## Weights

def test_head_and_token_embedding_are_one_tensor():
    model = tiny_gpt()
    assert model.head.weight is model.embed.embeddings.weight
    optimizer = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99))
    model.train()
    F.cross_entropy(model(torch.randint(23, (2, 5))).flatten(0, 1), torch.randint(23, (10,))).backward()
    optimizer.step()
    assert model.head.weight.data_ptr() == model.embed.embeddings.weight.data_ptr()


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_parameter_count_matches_the_formula(positional, activation):
    c = tiny_configs(positional=positional, ffn_activation=activation, n_layers=3)
    d, ff, vocab = c.d_model, c.d_ff, c.n_src_vocab
    # Four projections with biases; gated networks have three bias-free matrices, the others two with biases
    attention = 4 * (d * d + d)
    feed_forward = 3 * d * ff if activation == "swiglu" else d * ff + ff + ff * d + d
    layer_norms = 2 * 2 * d
    positions = c.max_len * d if positional == "learned" else 0
    # The tied head adds nothing; the final layer norm adds a gain and a bias.
    expected = vocab * d + positions + c.n_layers * (attention + feed_forward + layer_norms) + 2 * d
    assert sum(p.numel() for p in GPT(c).parameters()) == expected


@pytest.mark.parametrize("init_std", [None, 0.0625])
def test_initialisation_is_gpt2s(init_std):
    c = tiny_configs(n_layers=4, d_model=256, d_ff=1024, n_src_vocab=500, max_len=64)
    model = GPT(c) if init_std is None else GPT(c, init_std=init_std)
    std = 0.02 if init_std is None else init_std
    residual_std = std / math.sqrt(2 * c.n_layers)
    for layer in model.encoder.layers:
        attention, ff = layer.self_attn, layer.feed_forward
        for linear in (attention.query, attention.key, attention.value, ff.layer1):
            assert linear.weight.std().item() == pytest.approx(std, rel=0.05)
            assert torch.all(linear.bias == 0)
        for linear in (attention.output, ff.layer2):
            assert linear.weight.std().item() == pytest.approx(residual_std, rel=0.05)
            assert torch.all(linear.bias == 0)
        for norm in (layer.norm_self_attn, layer.norm_ff):
            assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert model.embed.embeddings.weight.std().item() == pytest.approx(std, rel=0.05)
    # Learned positions keep their own start, whatever the scale of the rest.
    assert model.embed.positional_encodings.std().item() == pytest.approx(0.02, rel=0.05)


def test_small_init_is_glorot_of_the_first_feed_forward_layer():
    # Glorot's std for a d -> 4d matrix, from torch's own fan computation; at GPT-2's width it is about 0.02.
    for d in (64, 128, 768):
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(4 * d, d))
        assert small_init_std(d) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=1e-12)
    assert small_init_std(768) == pytest.approx(0.02, abs=0.003)


def test_decoder_only_lm_initialises_like_the_gpt():
    # The configurations' language model with init="gpt2" draws the same weights as the GPT, at any std.
    from labml_nn.transformers.experiments.configs import DecoderOnlyLM
    c = tiny_configs(n_layers=3, d_model=64, d_ff=256, n_src_vocab=50)
    torch.manual_seed(0)
    gpt = GPT(c, init_std=0.07)
    torch.manual_seed(0)
    lm = DecoderOnlyLM(c, tie_embeddings=True, init="gpt2", init_std=0.07)
    for layer, other in zip(gpt.encoder.layers, lm.encoder.layers):
        for a, b in ((layer.self_attn.query, other.self_attn.query), (layer.self_attn.output, other.self_attn.output),
                     (layer.feed_forward.layer2, other.feed_forward.layer2)):
            assert a.weight.std().item() == pytest.approx(b.weight.std().item(), rel=0.1)
    assert lm.embed.embeddings.weight.std().item() == pytest.approx(0.07, rel=0.05)
    assert lm.encoder.layers[0].self_attn.output.weight.std().item() == pytest.approx(0.07 / math.sqrt(6), rel=0.1)


@pytest.mark.parametrize("init_std", [0, -0.1, float("nan"), float("inf"), True, "0.02"])
def test_bad_init_std_is_rejected(init_std):
    with pytest.raises(ValueError, match="init_std"):
        GPT(tiny_configs(), init_std=init_std)


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_optimizer_groups_decay_exactly_the_linear_weights(activation):
    model = tiny_gpt(torch.float32, ffn_activation=activation)
    optimizer = model.configure_optimizers(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95))
    names = {id(p): name for name, p in model.named_parameters()}
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    # Every parameter exactly once (the tied head/embedding included)
    assert sorted(grouped) == sorted(names)
    linear_weight = re.compile(r"encoder\.layers\.\d+\."
                               r"(self_attn\.(query|key|value|output)|feed_forward\.(layer1|layer2|linear_v))\.weight")
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(linear_weight.fullmatch(name) for name in decayed)
    per_layer = 7 if activation == "swiglu" else 6
    assert len(decayed) == per_layer * model.n_layers
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert "embed.embeddings.weight" in not_decayed and "embed.positional_encodings" in not_decayed
    assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["betas"] == (0.9, 0.95)
    assert optimizer.defaults["fused"]


# ## Sampling

def test_top_k_and_top_p_never_sample_outside_the_allowed_set():
    logits = torch.tensor([[2.0, 0.5, 1.0, -1.0, 3.0, 0.0, 1.5, -2.0],
                           [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]])
    n = 4000
    repeated = logits.repeat_interleave(n, dim=0)

    # top-k = 3: the three largest logits of each row, found by sorting in plain Python
    allowed_k = [set(sorted(range(8), key=lambda i: -row[i])[:3]) for row in logits.tolist()]
    torch.manual_seed(0)
    drawn = sample(repeated, top_k=3).view(2, n)
    for row in range(2):
        assert set(drawn[row].tolist()) == allowed_k[row]

    # top-p = 0.7: the fewest most likely tokens whose probabilities (float64) reach 0.7
    allowed_p = []
    for row in logits.double().softmax(-1).tolist():
        order, kept, total = sorted(range(8), key=lambda i: -row[i]), set(), 0.0
        for i in order:
            kept.add(i)
            total += row[i]
            if total >= 0.7:
                break
        allowed_p.append(kept)
    torch.manual_seed(0)
    drawn = sample(repeated, top_p=0.7).view(2, n)
    for row in range(2):
        assert set(drawn[row].tolist()) == allowed_p[row]
        # and in the proportions of the renormalised distribution
        probs = logits[row].double().softmax(-1)
        kept = sorted(allowed_p[row])
        expected = probs[kept] / probs[kept].sum()
        frequencies = torch.tensor([(drawn[row] == i).double().mean().item() for i in kept], dtype=torch.float64)
        assert torch.allclose(frequencies, expected, atol=0.03)


def test_filters_and_temperature():
    logits = torch.randn(5, 50)
    assert torch.equal(top_k_filter(logits, 50), logits)
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    # top-p with a tiny p keeps only the most likely token, like greedy decoding
    filtered = top_p_filter(logits, 1e-6)
    assert torch.equal(filtered.isfinite().sum(-1), torch.ones(5, dtype=torch.long))
    assert torch.equal(sample(logits, top_p=1e-6), logits.argmax(-1))
    assert torch.equal(sample(logits, temperature=0.0), logits.argmax(-1))
    # a very low temperature is almost greedy
    torch.manual_seed(0)
    assert torch.equal(sample(logits * 10, temperature=1e-3), logits.argmax(-1))


def test_generate_with_top_k_samples_among_the_models_top_k():
    model = tiny_gpt()
    prompt = torch.randint(23, (4, 2))
    torch.manual_seed(3)
    out = model.generate(prompt, 15, temperature=1.5, top_k=2)
    with torch.no_grad():
        for t in range(2, out.shape[1]):
            logits = model(out[:, max(0, t - model.max_len):t])[:, -1]
            top2 = logits.topk(2, dim=-1).indices
            assert torch.all((top2 == out[:, t:t + 1]).any(dim=-1))


# ## Learning

def test_tiny_gpt_overfits_one_batch(data_dir: Path):
    text = (data_dir / "tiny_shakespeare.txt").read_text()[:2000]
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(ch) for ch in text])
    torch.manual_seed(0)
    model = GPT(TransformerConfigs(n_layers=2, d_model=64, n_heads=4, d_ff=256, dropout=0.0,
                                   n_src_vocab=len(vocab), max_len=32, positional="learned",
                                   ffn_activation="gelu"))
    starts = torch.arange(4) * 400
    x = torch.stack([ids[s:s + 32] for s in starts])
    y = torch.stack([ids[s + 1:s + 33] for s in starts])
    optimizer = model.configure_optimizers(weight_decay=0.0, lr=1e-2, betas=(0.9, 0.99))
    model.train()
    # It gets there in about 40 steps; the budget leaves room.
    for _ in range(100):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if loss.item() < 0.1:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


# ## Bad input

def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="n_src_vocab"):
        GPT(tiny_configs(n_src_vocab=None))
    model = tiny_gpt()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="n_vocab"):
        model(torch.tensor([[1, 23]]))
    with pytest.raises(ValueError, match="n_vocab"):
        model(torch.tensor([[-1, 2]]))
    prompt = torch.zeros(1, 2, dtype=torch.long)
    for kwargs, name in [(dict(temperature=-1.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
                         (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p")]:
        with pytest.raises(ValueError, match=name):
            model.generate(prompt, 3, **kwargs)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(prompt, -1)
    with pytest.raises(ValueError, match="tokens"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="n_vocab"):
        model.generate(torch.tensor([[0, 99]]), 3)
    for kwargs, name in [(dict(weight_decay=-0.1, lr=1e-3, betas=(0.9, 0.99)), "weight_decay"),
                         (dict(weight_decay=0.1, lr=0.0, betas=(0.9, 0.99)), "lr"),
                         (dict(weight_decay=0.1, lr=1e-3, betas=(0.9, 1.0)), "betas")]:
        with pytest.raises(ValueError, match=name):
            model.configure_optimizers(**kwargs)


# ## On a GPU

@pytest.mark.cuda
@pytest.mark.parametrize("positional", POSITIONALS)
def test_cuda_forward_matches_cpu_float64(positional, monkeypatch):
    # Full float32 matrix products (the trainer may have switched TF32 on for the process)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = tiny_gpt(positional=positional, max_len=64)
    tokens = torch.randint(23, (3, 64))
    with torch.no_grad():
        expected = model(tokens)
        gpu = model.to("cuda", torch.float32)
        got = gpu(tokens.cuda()).double().cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got_bf16 = gpu(tokens.cuda()).double().cpu()
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert torch.allclose(got_bf16, expected, atol=5e-2, rtol=5e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("positional", POSITIONALS)
def test_cuda_generate(positional, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = tiny_gpt(torch.float32, positional=positional).cuda()
    prompt = torch.randint(23, (2, 4), device="cuda")
    assert torch.equal(model.generate(prompt, 20, temperature=0.0), generate_by_recomputing(model, prompt, 20))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model.generate(prompt, 20, temperature=0.8, top_k=5, top_p=0.9)
    assert out.shape == (2, 24) and out.min() >= 0 and out.max() < 23
    assert torch.equal(out[:, :4], prompt)


# ## Benchmarks run

@pytest.mark.parametrize("script", ["gpt_step.py", "gpt_generate.py"])
def test_benchmark_smoke(script):
    import subprocess
    import sys

    path = Path(__file__).resolve().parent.parent / "benchmarks" / script
    result = subprocess.run([sys.executable, str(path), "--tiny", "--rounds", "1"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "x" in result.stdout and "ms" in result.stdout


def test_mfu_counts_the_flops_of_gpt2_small(monkeypatch):
    """The step benchmark's FLOPs per token, against the parameters of its independent reference model (GPT-2
    small is nanoGPT's 123.69M without the position table) and the attention term computed here."""
    import importlib.util

    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    spec = importlib.util.spec_from_file_location("benchmark_gpt_step", benchmarks / "gpt_step.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    configs, batch = benchmark.gpt2_configs()
    with torch.device("meta"):
        reference = benchmark.ReferenceGPT(configs.n_src_vocab, configs.max_len, configs.n_layers, configs.d_model,
                                           configs.n_heads, configs.d_ff)
        ours = GPT(configs)
    weights = sum(p.numel() for p in reference.parameters()) - reference.wpe.weight.numel()
    assert round(weights / 1e6, 2) == 123.69
    assert sum(p.numel() for p in ours.parameters()) == weights + configs.max_len * configs.d_model
    assert benchmark.flops_per_token(configs) == 6 * weights + 12 * 12 * 768 * 1024
    assert batch == 12


def test_quality_benchmark_smoke(data_dir):
    import subprocess
    import sys

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpt_quality.py"
    result = subprocess.run([sys.executable, str(path), "--tiny", "--seeds", "0"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "LABML_NN_DATA": str(data_dir)})
    assert result.returncode == 0, result.stderr
    assert "labml_nn GPT" in result.stdout and "nanoGPT" in result.stdout and "paired" in result.stdout


# ## top_k against the vocabulary

def test_top_k_larger_than_the_vocabulary_is_an_error_naming_both_numbers():
    model = tiny_gpt()
    prompt = torch.zeros(1, 2, dtype=torch.long)
    for temperature in (1.0, 0.0):
        with pytest.raises(ValueError, match=r"top_k \(24\) is larger than the vocabulary \(23 tokens\)"):
            model.generate(prompt, 3, temperature=temperature, top_k=24)
    logits = torch.randn(2, 10)
    with pytest.raises(ValueError, match=r"top_k \(11\).*\(10 tokens\)"):
        sample(logits, top_k=11)
    with pytest.raises(ValueError, match=r"top_k \(11\).*\(10 tokens\)"):
        sample(logits, temperature=0.0, top_k=11)
    with pytest.raises(ValueError, match=r"top_k \(11\).*\(10 tokens\)"):
        top_k_filter(logits, 11)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 3, top_k=True)
    # exactly the vocabulary keeps every token
    assert torch.equal(top_k_filter(logits, 10), logits)
    assert model.generate(prompt, 3, top_k=23).shape == (1, 5)


# ## Stop tokens

def generate_with_stop_by_recomputing(model: GPT, tokens: torch.Tensor, max_new_tokens: int, stop: set[int],
                                      pad: int) -> torch.Tensor:
    """The reference: greedy decoding by full forward passes over the last `max_len` tokens, in plain Python lists:
    a row finishes with its first stop token and is padded after it; the loop ends when every row has finished."""
    rows = tokens.tolist()
    finished = [False] * len(rows)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor(rows)[:, -model.max_len:])[:, -1]
            for row, token in enumerate(logits.argmax(dim=-1).tolist()):
                rows[row].append(pad if finished[row] else token)
                finished[row] = finished[row] or token in stop
            if all(finished):
                break
    return torch.tensor(rows)


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_generate_stops_at_eos_like_a_loop_of_full_forward_passes(positional):
    model = tiny_gpt(positional=positional)
    prompt = torch.randint(23, (3, 3))
    new = 15  # past max_len = 12, so the window slides too
    free = generate_by_recomputing(model, prompt, new)
    assert torch.equal(model.generate(prompt, new, temperature=0.0), free)
    cases = [
        # row 0 stops at its 4th new token; the others go on (or stop too if they meet the same token)
        (int(free[0, 3 + 3]), None),
        # every row's 3rd new token is a stop token: all finish by then and the result is shorter
        ([int(t) for t in free[:, 3 + 2]], 0),
        # a token that is never generated: nothing stops
        (sorted(set(range(23)) - set(free[:, 3:].flatten().tolist()))[0], None),
    ]
    for eos, pad in cases:
        stop = {eos} if isinstance(eos, int) else set(eos)
        expected = generate_with_stop_by_recomputing(model, prompt, new, stop, pad if pad is not None else
                                                     (eos if isinstance(eos, int) else eos[0]))
        got = model.generate(prompt, new, temperature=0.0, eos_token_id=eos, pad_token_id=pad)
        assert torch.equal(got, expected), (eos, pad)
    # the all-finish case really ended early, and a never-generated stop token changes nothing
    assert model.generate(prompt, new, temperature=0.0, eos_token_id=cases[1][0]).shape[1] <= 3 + 3
    assert torch.equal(model.generate(prompt, new, temperature=0.0, eos_token_id=cases[2][0]), free)


def test_sampled_generation_with_eos_is_the_free_sample_cut_and_padded():
    # Finished rows still draw (and discard) their samples, so with the same seed every row's tokens up to its stop
    # token are those of the generation without stop tokens.
    model = tiny_gpt()
    prompt = torch.randint(23, (4, 2))
    torch.manual_seed(5)
    free = model.generate(prompt, 10, temperature=1.0)
    eos = [int(free[0, 4]), int(free[1, 6])]
    torch.manual_seed(5)
    got = model.generate(prompt, 10, temperature=1.0, eos_token_id=eos, pad_token_id=22)
    assert torch.equal(got[:, :2], prompt)
    for row in range(4):
        new = free[row, 2:got.shape[1]].tolist()
        stops = [i for i, token in enumerate(new) if token in eos]
        end = stops[0] + 1 if stops else len(new)
        assert got[row, 2:2 + end].tolist() == new[:end]
        assert (got[row, 2 + end:] == 22).all()
    finished_at = [next((i for i, t in enumerate(free[row, 2:].tolist()) if t in eos), None) for row in range(4)]
    if all(i is not None for i in finished_at):
        assert got.shape[1] == 2 + max(finished_at) + 1
    else:
        assert got.shape[1] == 12


def test_stop_token_in_the_prompt_does_not_stop():
    model = tiny_gpt()
    prompt = torch.randint(23, (2, 4))
    eos = int(prompt[0, -1])
    out = model.generate(prompt, 5, temperature=0.0, eos_token_id=eos)
    free = model.generate(prompt, 5, temperature=0.0)
    assert torch.equal(out[0, :5], free[0, :5]) and out.shape[1] >= 5


def test_bad_stop_tokens_raise_value_error():
    model = tiny_gpt()
    prompt = torch.zeros(1, 2, dtype=torch.long)
    for kwargs, name in [(dict(eos_token_id=23), "eos_token_id"), (dict(eos_token_id=-1), "eos_token_id"),
                         (dict(eos_token_id=[]), "eos_token_id"), (dict(eos_token_id=[1, 99]), "eos_token_id"),
                         (dict(eos_token_id=True), "eos_token_id"), (dict(eos_token_id=1.0), "eos_token_id"),
                         (dict(eos_token_id=1, pad_token_id=23), "pad_token_id"),
                         (dict(pad_token_id=0), "pad_token_id")]:
        with pytest.raises(ValueError, match=name):
            model.generate(prompt, 3, **kwargs)


def cut_at_stop(free: torch.Tensor, prompt: int, stop: set[int], pad: int) -> torch.Tensor:
    """What stopping makes of a free greedy generation: each row cut after its first stop token and padded, the
    whole cut where the last row finished (greedy rows are independent, so stopping changes nothing before)."""
    rows, ends = free.tolist(), []
    for row in rows:
        end = next((t + 1 for t in range(prompt, len(row)) if row[t] in stop), None)
        ends.append(end)
        if end is not None:
            row[end:] = [pad] * (len(row) - end)
    length = max(ends) if all(end is not None for end in ends) else free.shape[1]
    return torch.tensor(rows, device=free.device)[:, :length]


def test_stopping_a_greedy_generation_cuts_the_free_one():
    model = tiny_gpt()
    prompt = torch.randint(23, (3, 3))
    free = model.generate(prompt, 12, temperature=0.0)
    for eos in ([int(t) for t in free[:, 3 + 2]], [int(free[1, 3 + 5])]):
        assert torch.equal(model.generate(prompt, 12, temperature=0.0, eos_token_id=eos),
                           cut_at_stop(free, 3, set(eos), eos[0]))


@pytest.mark.cuda
def test_cuda_generate_with_stop_tokens(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = tiny_gpt(torch.float32).cuda()
    prompt = torch.randint(23, (3, 3), device="cuda")
    free = generate_by_recomputing(model, prompt, 15)
    for eos in ([int(t) for t in free[:, 3 + 2]], [int(free[1, 3 + 5])]):
        got = model.generate(prompt, 15, temperature=0.0, eos_token_id=eos)
        assert got.device.type == "cuda" and torch.equal(got, cut_at_stop(free, 3, set(eos), eos[0]))
