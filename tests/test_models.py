"""The transformer: layers and stacks vs PyTorch's own, causality, cached decoding, embeddings, greedy and beam
decoding (against brute force and a plain-Python beam search), and a tiny encoder-decoder that learns to copy."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labml_nn.transformers.feed_forward import FeedForward
from labml_nn.transformers.mha import MultiHeadAttention
from labml_nn.transformers.models import (Decoder, Embeddings, EmbeddingsWithLearnedPositionalEncoding,
                                          EmbeddingsWithPositionalEncoding, Encoder, EncoderDecoder, Generator,
                                          TransformerLayer, init_linear_xavier_)
from labml_nn.transformers.rope import RotaryPEMultiHeadAttention
from labml_nn.transformers.utils import padding_mask, subsequent_mask

D_MODEL, HEADS, D_FF = 16, 4, 32


pytestmark = pytest.mark.usefixtures("single_thread")


def make_layer(pre_norm=True, cross=False, attention=MultiHeadAttention, d_model=D_MODEL, heads=HEADS):
    src_attn = MultiHeadAttention(heads, d_model) if cross else None
    layer = TransformerLayer(d_model, attention(heads, d_model), src_attn, FeedForward(d_model, D_FF, dropout=0.0),
                             dropout_prob=0.0, pre_norm=pre_norm)
    # Layer norms away from the identity, so that a norm applied in the wrong place shows.
    for norm in (layer.norm_self_attn, layer.norm_src_attn, layer.norm_ff):
        if norm is not None:
            nn.init.normal_(norm.weight, 1.0, 0.3)
            nn.init.normal_(norm.bias, 0.0, 0.3)
    return layer


def randomise_final_norm(stack):
    if isinstance(stack.norm, nn.LayerNorm):
        nn.init.normal_(stack.norm.weight, 1.0, 0.3)
        nn.init.normal_(stack.norm.bias, 0.0, 0.3)


def make_encoder_decoder(n_vocab, d_model=D_MODEL, n_layers=2, pre_norm=True, embed=EmbeddingsWithPositionalEncoding,
                         max_len=64):
    model = EncoderDecoder(Encoder(make_layer(pre_norm, d_model=d_model), n_layers),
                           Decoder(make_layer(pre_norm, cross=True, d_model=d_model), n_layers),
                           embed(d_model, n_vocab, max_len), embed(d_model, n_vocab, max_len),
                           Generator(n_vocab, d_model))
    init_linear_xavier_(model)
    return model


# ## One layer vs the equations written out

@pytest.mark.parametrize("pre_norm", [True, False])
def test_layer_matches_residual_equations(pre_norm):
    layer = make_layer(pre_norm, cross=True).double()
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    memory = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    mask, src_mask = subsequent_mask(5), torch.rand(2, 1, 1, 7) > 0.3
    src_mask[..., 0] = True

    def ln(h, norm):
        return F.layer_norm(h, (D_MODEL,), norm.weight, norm.bias, norm.eps)

    def sa(h):
        return layer.self_attn(h, h, h, mask)

    def ca(h):
        return layer.src_attn(h, memory, memory, src_mask)

    ff = layer.feed_forward
    if pre_norm:
        h = x + sa(ln(x, layer.norm_self_attn))
        h = h + ca(ln(h, layer.norm_src_attn))
        expected = h + ff(ln(h, layer.norm_ff))
    else:
        h = ln(x + sa(x), layer.norm_self_attn)
        h = ln(h + ca(h), layer.norm_src_attn)
        expected = ln(h + ff(h), layer.norm_ff)
    torch.testing.assert_close(layer(x, mask, memory, src_mask), expected, rtol=0, atol=1e-12)


def test_layer_rejects_src_mismatch():
    with pytest.raises(ValueError, match="src"):
        make_layer(cross=True)(torch.randn(1, 3, D_MODEL))
    with pytest.raises(ValueError, match="src"):
        make_layer(cross=False)(torch.randn(1, 3, D_MODEL), src=torch.randn(1, 3, D_MODEL))


# ## Stacks vs torch.nn.TransformerEncoder / TransformerDecoder with the same weights

def copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention):
    theirs.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
    theirs.out_proj.weight.copy_(ours.output.weight)
    theirs.out_proj.bias.copy_(ours.output.bias)


def copy_linear_and_norms(ours, theirs, pairs):
    for our_name, their_name in pairs:
        getattr(theirs, their_name).load_state_dict(getattr(ours, our_name).state_dict())


@torch.no_grad()
def torch_encoder_like(encoder: Encoder, pre_norm: bool, n_layers: int):
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, activation="relu", batch_first=True,
                                       norm_first=pre_norm, dtype=torch.float64)
    final = nn.LayerNorm(D_MODEL, dtype=torch.float64) if pre_norm else None
    theirs = nn.TransformerEncoder(layer, n_layers, norm=final, enable_nested_tensor=False)
    for ours_l, theirs_l in zip(encoder.layers, theirs.layers):
        copy_attention(ours_l.self_attn, theirs_l.self_attn)
        theirs_l.linear1.load_state_dict(ours_l.feed_forward.layer1.state_dict())
        theirs_l.linear2.load_state_dict(ours_l.feed_forward.layer2.state_dict())
        theirs_l.norm1.load_state_dict(ours_l.norm_self_attn.state_dict())
        theirs_l.norm2.load_state_dict(ours_l.norm_ff.state_dict())
    if pre_norm:
        theirs.norm.load_state_dict(encoder.norm.state_dict())
    return theirs


@pytest.mark.parametrize("pre_norm", [True, False])
def test_encoder_matches_torch_transformer_encoder(pre_norm):
    encoder = Encoder(make_layer(pre_norm), 3).double()
    randomise_final_norm(encoder)
    theirs = torch_encoder_like(encoder, pre_norm, 3)
    x = torch.randn(3, 6, D_MODEL, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 2])
    real = torch.arange(6)[None, :] < lengths[:, None]
    # torch's key padding mask is True at positions to ignore
    expected = theirs(x, src_key_padding_mask=~real)
    torch.testing.assert_close(encoder(x, real[:, None, None, :]), expected, rtol=0, atol=1e-10)
    # and causal, as a language model's body
    expected = theirs(x, mask=~subsequent_mask(6), is_causal=True)
    torch.testing.assert_close(encoder(x, is_causal=True), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_decoder_matches_torch_transformer_decoder(pre_norm):
    decoder = Decoder(make_layer(pre_norm, cross=True), 2).double()
    randomise_final_norm(decoder)
    layer = nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, activation="relu", batch_first=True,
                                       norm_first=pre_norm, dtype=torch.float64)
    final = nn.LayerNorm(D_MODEL, dtype=torch.float64) if pre_norm else None
    theirs = nn.TransformerDecoder(layer, 2, norm=final)
    with torch.no_grad():
        for ours_l, theirs_l in zip(decoder.layers, theirs.layers):
            copy_attention(ours_l.self_attn, theirs_l.self_attn)
            copy_attention(ours_l.src_attn, theirs_l.multihead_attn)
            theirs_l.linear1.load_state_dict(ours_l.feed_forward.layer1.state_dict())
            theirs_l.linear2.load_state_dict(ours_l.feed_forward.layer2.state_dict())
            theirs_l.norm1.load_state_dict(ours_l.norm_self_attn.state_dict())
            theirs_l.norm2.load_state_dict(ours_l.norm_src_attn.state_dict())
            theirs_l.norm3.load_state_dict(ours_l.norm_ff.state_dict())
        if pre_norm:
            theirs.norm.load_state_dict(decoder.norm.state_dict())
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    memory = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    src_real = torch.arange(7)[None, :] < torch.tensor([7, 3])[:, None]
    expected = theirs(x, memory, tgt_mask=~subsequent_mask(5), memory_key_padding_mask=~src_real)
    out = decoder(x, memory, src_real[:, None, None, :], subsequent_mask(5))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(decoder(x, memory, src_real[:, None, None, :], is_causal=True), expected,
                               rtol=0, atol=1e-10)


def test_stacks_are_deep_copies_with_final_norm_only_for_pre_norm():
    layer = make_layer()
    encoder = Encoder(layer, 3)
    assert len(encoder.layers) == 3 and isinstance(encoder.norm, nn.LayerNorm)
    pointers = {l.self_attn.query.weight.data_ptr() for l in encoder.layers} | {layer.self_attn.query.weight.data_ptr()}
    assert len(pointers) == 4
    assert isinstance(Encoder(make_layer(pre_norm=False), 2).norm, nn.Identity)
    assert isinstance(Decoder(make_layer(pre_norm=False, cross=True), 2).norm, nn.Identity)


# ## Causality: output t does not depend on inputs after t

def assert_causal(run, x):
    """`run(x)` -> [batch, seq, d]; the gradient of output t w.r.t. inputs > t is exactly zero (and not all zero
    up to t)."""
    seq = x.shape[1]
    # A random direction: the plain sum of a layer norm's outputs would be constant.
    direction = torch.randn(x.shape[-1] if run(x).shape[-1] == x.shape[-1] else run(x).shape[-1])
    for t in range(seq):
        xi = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad((run(xi)[:, t] * direction).sum(), xi)
        assert (grad[:, t + 1:] == 0).all(), f"output {t} depends on later inputs"
        assert (grad[:, :t + 1].abs().sum(-1) > 0).all(), f"output {t} ignores earlier inputs"


def test_decoder_is_causal():
    decoder = Decoder(make_layer(cross=True), 2)
    memory = torch.randn(2, 4, D_MODEL)
    assert_causal(lambda x: decoder(x, memory, None, subsequent_mask(6)), torch.randn(2, 6, D_MODEL))
    assert_causal(lambda x: decoder(x, memory, None, is_causal=True), torch.randn(2, 6, D_MODEL))


@pytest.mark.parametrize("pre_norm", [True, False])
def test_encoder_with_is_causal_is_causal(pre_norm):
    encoder = Encoder(make_layer(pre_norm), 2)
    assert_causal(lambda x: encoder(x, is_causal=True), torch.randn(2, 6, D_MODEL))


def test_whole_encoder_decoder_is_causal_in_the_target():
    model = make_encoder_decoder(11)
    src = torch.randint(0, 11, (2, 5))
    memory = model.encode(src, None)

    def run(x):
        return model.generator(model.decoder(x, memory, None, subsequent_mask(x.shape[1])))

    assert_causal(run, model.tgt_embed(torch.randint(0, 11, (2, 6))))


# ## Cached (incremental) computation equals the full forward pass

@pytest.mark.parametrize("attention", [MultiHeadAttention, RotaryPEMultiHeadAttention])
@pytest.mark.parametrize("pre_norm", [True, False])
def test_causal_encoder_with_caches_equals_full_forward(attention, pre_norm):
    encoder = Encoder(make_layer(pre_norm, attention=attention), 3).double().eval()
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    full = encoder(x, is_causal=True)
    caches = encoder.new_caches(2, 9, dtype=torch.float64)
    pieces, start = [], 0
    # chunks of several positions (a prompt) and single positions (generation)
    for size in (3, 1, 1, 2, 1, 1):
        pieces.append(encoder(x[:, start:start + size], is_causal=True, caches=caches))
        start += size
    assert caches[0].length == 9
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)


def test_wrong_number_of_caches_raises():
    encoder = Encoder(make_layer(), 2)
    with pytest.raises(ValueError, match="one KVCache per layer"):
        encoder(torch.randn(1, 2, D_MODEL), is_causal=True, caches=encoder.new_caches(1, 4)[:1])


def reference_greedy(model, src, src_mask, max_len, start):
    """Recompute the whole prefix at every step, no caches."""
    ys = torch.full((src.shape[0], 1), start, dtype=torch.long)
    for _ in range(max_len - 1):
        logits = model(src, ys, src_mask, subsequent_mask(ys.shape[1]))[:, -1]
        ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
    return ys


@pytest.mark.parametrize("embed", [EmbeddingsWithPositionalEncoding, EmbeddingsWithLearnedPositionalEncoding])
def test_greedy_decode_with_caches_equals_recomputing_the_prefix(embed):
    model = make_encoder_decoder(13, embed=embed).double().eval()
    src = torch.randint(3, 13, (3, 6))
    src[2, 4:] = 0
    src_mask = padding_mask(src, 0)
    expected = reference_greedy(model, src, src_mask, 8, start=1)
    assert torch.equal(model.greedy_decode(src, src_mask, 8, start_symbol=1), expected)


# ## Embeddings

def sinusoid(max_len, d):
    pe = torch.zeros(max_len, d, dtype=torch.float64)
    for pos in range(max_len):
        for i in range(0, d, 2):
            pe[pos, i] = math.sin(pos / 10000 ** (i / d))
            pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
    return pe


def test_embeddings_scaled_by_sqrt_d_model_with_unit_variance():
    embed = Embeddings(64, 100, max_len=10)
    tokens = torch.randint(0, 100, (2, 5))
    torch.testing.assert_close(embed(tokens), embed.embeddings.weight[tokens] * 8.0)
    # initialised so that the scaled embeddings have about unit variance, like the sinusoids they are added to
    assert 0.8 < (embed.embeddings.weight * 8.0).std() < 1.2


def test_embeddings_without_the_scale_are_the_plain_lookup_with_unit_variance():
    for embed in (Embeddings(64, 100, max_len=10, scale=False),
                  EmbeddingsWithLearnedPositionalEncoding(64, 100, max_len=10, scale=False)):
        tokens = torch.randint(0, 100, (2, 5))
        positions = embed.positional_encodings[:5] if hasattr(embed, "positional_encodings") else 0
        torch.testing.assert_close(embed(tokens), embed.embeddings.weight[tokens] + positions)
        assert 0.8 < embed.embeddings.weight.std() < 1.2
    fixed = EmbeddingsWithPositionalEncoding(8, 50, max_len=12, scale=False).double()
    tokens = torch.randint(0, 50, (2, 7))
    torch.testing.assert_close(fixed(tokens), fixed.embeddings.weight[tokens] + sinusoid(12, 8)[:7], rtol=0, atol=1e-6)


def test_fixed_positions_are_the_papers_sinusoids_with_offset():
    embed = EmbeddingsWithPositionalEncoding(8, 50, max_len=12).double()
    tokens = torch.randint(0, 50, (2, 7))
    tokens_scaled = embed.embeddings.weight[tokens] * math.sqrt(8)
    pe = sinusoid(12, 8)
    torch.testing.assert_close(embed(tokens), tokens_scaled + pe[:7], rtol=0, atol=1e-6)
    torch.testing.assert_close(embed(tokens, offset=5), tokens_scaled + pe[5:12], rtol=0, atol=1e-6)
    # the table is not a parameter and not saved
    assert "positional_encodings" not in embed.state_dict()
    assert not any(p.shape[0] == 12 for p in embed.parameters())


def test_learned_positions_with_offset():
    embed = EmbeddingsWithLearnedPositionalEncoding(8, 50, max_len=12)
    tokens = torch.randint(0, 50, (2, 4))
    scaled = embed.embeddings.weight[tokens] * math.sqrt(8)
    torch.testing.assert_close(embed(tokens), scaled + embed.positional_encodings[:4])
    torch.testing.assert_close(embed(tokens, offset=8), scaled + embed.positional_encodings[8:12])
    # offset equals slicing a longer sequence
    longer = torch.cat([torch.randint(0, 50, (2, 3)), tokens], dim=1)
    torch.testing.assert_close(embed(longer)[:, 3:], embed(tokens, offset=3))
    assert embed.positional_encodings.requires_grad


@pytest.mark.parametrize("cls", [Embeddings, EmbeddingsWithPositionalEncoding, EmbeddingsWithLearnedPositionalEncoding])
def test_embeddings_reject_bad_ids_and_lengths(cls):
    embed = cls(8, 10, max_len=6)
    for bad in (10, 11, -1):
        tokens = torch.tensor([[1, 2, bad]])
        with pytest.raises(ValueError, match="n_vocab=10"):
            embed(tokens)
    with pytest.raises(ValueError, match="max_len=6"):
        embed(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len=6"):
        embed(torch.zeros(1, 3, dtype=torch.long), offset=4)
    with pytest.raises(ValueError, match="offset"):
        embed(torch.zeros(1, 3, dtype=torch.long), offset=-1)
    with pytest.raises(ValueError, match="integer tensor"):
        embed(torch.zeros(1, 3))
    assert embed(torch.tensor([[0, 9]]), offset=4).shape == (1, 2, 8)


def test_embeddings_follow_the_module_dtype():
    embed = EmbeddingsWithPositionalEncoding(8, 10, max_len=6)
    assert embed(torch.tensor([[1, 2]])).dtype == torch.float32
    embed = embed.to(torch.bfloat16)
    assert embed(torch.tensor([[1, 2]])).dtype == torch.bfloat16


# ## Beam search against brute force and a plain-Python beam search, on a model whose next-token distribution is
# a fixed table (a Markov chain over the last token, one table per sample).

class MarkovModel(EncoderDecoder):
    def __init__(self, log_probs: torch.Tensor):
        n_vocab = log_probs.shape[-1]
        super().__init__(Encoder(make_layer(), 1), Decoder(make_layer(cross=True), 1),
                         Embeddings(D_MODEL, n_vocab), Embeddings(D_MODEL, n_vocab), Generator(n_vocab, D_MODEL))
        self.log_probs = log_probs

    # memory[b, 0, 0] carries the sample index given as the source
    def encode(self, src, src_mask):
        return src[:, :, None].float()

    def next_token_logits(self, memory, src_mask, tokens, caches):
        return self.log_probs[memory[:, 0, 0].long(), tokens[:, -1]]


def sequence_score(log_probs, seq, end, alpha):
    """log p / |y|^alpha of a full sequence (start symbol first) with `end` absorbing; -inf if it is not a
    valid continuation (a non-end token after the end)."""
    total, length, done = 0.0, 0, False
    for prev, word in zip(seq[:-1], seq[1:]):
        if done:
            if word != end:
                return -math.inf
            continue
        total += float(log_probs[prev, word])
        length += 1
        done = word == end
    return total / length ** alpha


def reference_beam_search(log_probs, start, end, max_len, beam, alpha):
    hyps = [([start], 0.0, False, 0)]
    for _ in range(1, max_len):
        candidates = []
        for tokens, score, done, length in hyps:
            if done:
                candidates.append((tokens + [end], score, True, length))
            else:
                for w in range(log_probs.shape[-1]):
                    candidates.append((tokens + [w], score + float(log_probs[tokens[-1], w]), w == end, length + 1))
        candidates.sort(key=lambda c: c[1] / c[3] ** alpha, reverse=True)
        hyps = candidates[:beam]
        if all(h[2] for h in hyps):
            break
    best = hyps[0][0]
    return best + [end] * (max_len - len(best))


def random_tables(batch, n_vocab, temperature=1.5):
    return (temperature * torch.randn(batch, n_vocab, n_vocab, dtype=torch.float64)).log_softmax(-1)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_exhaustive_beam_search_finds_the_best_sequence(alpha):
    n_vocab, max_len, start, end = 4, 5, 0, 1
    tables = random_tables(5, n_vocab)
    model = MarkovModel(tables)
    src = torch.arange(5)[:, None]
    # a beam as large as the number of sequences keeps every hypothesis
    out = model.beam_search(src, None, max_len, start, end, beam_size=n_vocab ** (max_len - 1), length_penalty=alpha)
    for b in range(5):
        sequences = [[start, *rest] for rest in itertools.product(range(n_vocab), repeat=max_len - 1)]
        best = max(sequences, key=lambda s: sequence_score(tables[b], s, end, alpha))
        assert out[b].tolist() == best


@pytest.mark.parametrize("beam_size", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_matches_plain_python_beam_search(beam_size, alpha):
    n_vocab, max_len, start, end = 6, 7, 0, 1
    tables = random_tables(8, n_vocab)
    out = MarkovModel(tables).beam_search(torch.arange(8)[:, None], None, max_len, start, end, beam_size,
                                          length_penalty=alpha)
    for b in range(8):
        assert out[b].tolist() == reference_beam_search(tables[b], start, end, max_len, beam_size, alpha)


def test_length_penalty_changes_the_choice():
    # From start (0): end (1) or `a` (2) with probability 1/2 each; a -> b (3) and b -> end with 0.9.
    # Unnormalised, [end] (log 0.5) beats [a, b, end] (log 0.405); per token, the long one wins.
    p = torch.full((4, 4), 1e-9, dtype=torch.float64)
    p[0, 1] = p[0, 2] = 0.5
    p[2, 3] = p[3, 1] = 0.9
    p[2, 0] = p[3, 0] = 0.1
    p[1, 1] = 1.0
    model = MarkovModel(p.log()[None])
    src = torch.zeros(1, 1, dtype=torch.long)
    assert model.beam_search(src, None, 6, 0, 1, beam_size=3, length_penalty=0.0).tolist() == [[0, 1, 1, 1, 1, 1]]
    assert model.beam_search(src, None, 6, 0, 1, beam_size=3, length_penalty=1.0).tolist() == [[0, 2, 3, 1, 1, 1]]


@pytest.mark.parametrize("seed", range(3))
def test_beam_size_one_is_greedy_on_random_models(seed):
    torch.manual_seed(seed)
    model = make_encoder_decoder(7, embed=EmbeddingsWithLearnedPositionalEncoding).double().eval()
    src = torch.randint(1, 7, (6, 5))
    src[::2, 3:] = 0
    src_mask = padding_mask(src, 0)
    greedy = model.greedy_decode(src, src_mask, 12, start_symbol=1, end_symbol=2)
    for alpha in (0.0, 1.0):
        beam = model.beam_search(src, src_mask, 12, start_symbol=1, end_symbol=2, beam_size=1, length_penalty=alpha)
        assert torch.equal(beam, greedy)


def test_greedy_with_end_symbol_pads_after_the_end():
    model = MarkovModel(random_tables(4, 5))
    out = model.greedy_decode(torch.arange(4)[:, None], None, 9, start_symbol=0, end_symbol=1)
    plain = model.greedy_decode(torch.arange(4)[:, None], None, 9, start_symbol=0)
    for row, plain_row in zip(out.tolist(), plain.tolist()):
        if 1 in row:
            first = row.index(1)
            assert row[first:] == [1] * (9 - first)
            assert row[:first + 1] == plain_row[:first + 1]
        else:
            assert row == plain_row


# ## A tiny encoder-decoder learns to copy

PAD, START, END, N_VOCAB = 0, 1, 2, 10


def copy_batch(batch, generator):
    """Sources of 3 to 6 symbols (ids 3..9), END, padded; targets are START + the same + END, padded."""
    lengths = torch.randint(3, 7, (batch,), generator=generator)
    symbols = torch.randint(3, N_VOCAB, (batch, 6), generator=generator)
    positions = torch.arange(7)[None, :]
    src = torch.where(positions < lengths[:, None], F.pad(symbols, (0, 1)), PAD)
    src[positions == lengths[:, None]] = END
    tgt = torch.cat([torch.full((batch, 1), START), src], dim=1)
    return src, tgt


def target_mask(tgt):
    # `[batch, 1, 1, seq] & [seq, seq]` to `[batch, 1, seq, seq]`
    return padding_mask(tgt, PAD) & subsequent_mask(tgt.shape[1])


@pytest.fixture(scope="module")
def copy_model():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    steps = 300
    model = make_encoder_decoder(N_VOCAB, d_model=32, n_layers=1, max_len=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    for _ in range(steps):
        src, tgt = copy_batch(64, generator)
        logits = model(src, tgt[:, :-1], padding_mask(src, PAD), target_mask(tgt[:, :-1]))
        loss = F.cross_entropy(logits.reshape(-1, N_VOCAB), tgt[:, 1:].reshape(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval(), generator, loss.item()


def test_copy_task_greedy_and_beam_reproduce_the_source(copy_model):
    model, generator, loss = copy_model
    assert loss < 0.05
    src, tgt = copy_batch(32, generator)
    # after END the decoders pad with END
    expected = torch.where(tgt == PAD, END, tgt)
    src_mask = padding_mask(src, PAD)
    greedy = model.greedy_decode(src, src_mask, tgt.shape[1], START, end_symbol=END)
    bad = (greedy != expected).any(-1)
    assert torch.equal(greedy, expected), (greedy[bad], expected[bad])
    beam = model.beam_search(src, src_mask, tgt.shape[1], START, END, beam_size=4)
    assert torch.equal(beam, expected)
    assert torch.equal(model.beam_search(src, src_mask, tgt.shape[1], START, END, beam_size=1), greedy)
    # without an end symbol greedy decoding keeps going, but starts with the copy
    plain = model.greedy_decode(src, src_mask, tgt.shape[1], START)
    real = tgt != PAD
    assert torch.equal(plain[real], tgt[real])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_copy_task_decodes_on_cuda(copy_model, dtype):
    import copy

    model = copy.deepcopy(copy_model[0]).to("cuda", dtype)
    src, tgt = copy_batch(32, torch.Generator().manual_seed(1))
    src, tgt = src.cuda(), tgt.cuda()
    expected = torch.where(tgt == PAD, END, tgt)
    src_mask = padding_mask(src, PAD)
    assert torch.equal(model.greedy_decode(src, src_mask, tgt.shape[1], START, end_symbol=END), expected)
    assert torch.equal(model.beam_search(src, src_mask, tgt.shape[1], START, END, beam_size=3), expected)


@pytest.mark.cuda
def test_causal_encoder_with_caches_on_cuda():
    encoder = Encoder(make_layer(attention=RotaryPEMultiHeadAttention), 2).cuda().eval()
    x = torch.randn(2, 7, D_MODEL, device="cuda")
    full = encoder(x, is_causal=True)
    caches = encoder.new_caches(2, 7, device="cuda")
    pieces = [encoder(x[:, :4], is_causal=True, caches=caches)]
    pieces += [encoder(x[:, t:t + 1], is_causal=True, caches=caches) for t in range(4, 7)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)
