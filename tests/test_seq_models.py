"""Sequence models against oracles: the scratch RNN against nn.RNN, autograd and finite differences;
masking against hand-computed values; beam search against greedy; BLEU against hand-computed
scores; incremental decoding against teacher forcing; word2vec's loss against torch's."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from practicum.models.rnn import (MODELS, RNNLM, RNNScratch, build_lm, grad_clipping, hidden_for_budget,
                                  lm_parameters, predict)
from practicum.models.masking import masked_ce, masked_softmax, sequence_mask
from practicum.models.seq2seq import beam_search, build_translator, greedy
from practicum.models.textclass import build_classifier
from practicum.models.word2vec import SkipGram, analogy, masked_bce_library, nearest, sigmoid_bce
from practicum.metrics.bleu import bleu_d2l, corpus_bleu


# -- the scratch RNN ----------------------------------------------------------------------------------


def scratch_and_library(V=7, H=5):
    torch.manual_seed(0)
    scratch = RNNScratch(V, H, sigma=0.5)
    lib = RNNLM("rnn", V, H)
    with torch.no_grad():  # the same function: nn.RNN computes x W_ih^T + b_ih + h W_hh^T + b_hh
        lib.rnn.weight_ih_l0.copy_(scratch.W_xh.T)
        lib.rnn.weight_hh_l0.copy_(scratch.W_hh.T)
        lib.rnn.bias_ih_l0.copy_(scratch.b_h)
        lib.rnn.bias_hh_l0.zero_()
        lib.out.weight.copy_(scratch.W_hq.T)
        lib.out.bias.copy_(scratch.b_q)
    return scratch, lib


def test_scratch_rnn_matches_nn_rnn_outputs_and_gradients():
    scratch, lib = scratch_and_library()
    X = torch.randint(0, 7, (3, 6))
    Y = torch.randint(0, 7, (3, 6))
    h0 = torch.randn(3, 5)
    out_s, h_s = scratch(X, h0)
    out_l, h_l = lib(X, h0[None])
    assert out_s.shape == (3, 6, 7) and h_s.shape == (3, 5)
    torch.testing.assert_close(out_s, out_l)
    torch.testing.assert_close(h_s, h_l[0])
    F.cross_entropy(out_s.reshape(-1, 7), Y.reshape(-1)).backward()
    F.cross_entropy(out_l.reshape(-1, 7), Y.reshape(-1)).backward()
    torch.testing.assert_close(scratch.W_xh.grad, lib.rnn.weight_ih_l0.grad.T)
    torch.testing.assert_close(scratch.W_hh.grad, lib.rnn.weight_hh_l0.grad.T)
    torch.testing.assert_close(scratch.b_h.grad, lib.rnn.bias_ih_l0.grad)
    torch.testing.assert_close(scratch.W_hq.grad, lib.out.weight.grad.T)


def test_scratch_rnn_gradients_match_finite_differences():
    torch.manual_seed(1)
    model = RNNScratch(5, 4, sigma=0.5).double()
    X = torch.randint(0, 5, (2, 4))
    Y = torch.randint(0, 5, (2, 4))
    params = [model.W_xh, model.W_hh, model.b_h, model.W_hq, model.b_q]

    def loss_of(*ps):
        saved = [p.data for p in params]
        for p, q in zip(params, ps):
            p.data = q
        out, _ = model(X, torch.zeros(2, 4, dtype=torch.double))
        for p, s in zip(params, saved):
            p.data = s
        return F.cross_entropy(out.reshape(-1, 5), Y.reshape(-1))

    out, _ = model(X, torch.zeros(2, 4, dtype=torch.double))
    F.cross_entropy(out.reshape(-1, 5), Y.reshape(-1)).backward()
    eps = 1e-6
    for k, p in enumerate(params):
        num = torch.zeros_like(p)
        for i in range(p.numel()):
            plus, minus = [q.detach().clone() for q in params], [q.detach().clone() for q in params]
            plus[k].view(-1)[i] += eps
            minus[k].view(-1)[i] -= eps
            num.view(-1)[i] = (loss_of(*plus) - loss_of(*minus)) / (2 * eps)
        torch.testing.assert_close(p.grad, num, atol=1e-7, rtol=1e-5)


def test_grad_clipping_from_scratch_equals_clip_grad_norm():
    torch.manual_seed(2)
    a, b = RNNScratch(6, 4), RNNScratch(6, 4)
    b.load_state_dict(a.state_dict())
    X = torch.randint(0, 6, (2, 5))
    for m in (a, b):
        out, _ = m(X, m.begin_state(2))
        (out**2).sum().mul(100).backward()
    norm = grad_clipping(a.parameters(), 0.5)
    ref = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    assert norm == pytest.approx(float(ref), rel=1e-5) and norm > 0.5
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_formula_and_equal_budget_widths(name):
    V = 30
    for hidden, layers in ((8, 1), (16, 2 if name != "rnn_scratch" else 1)):
        model = build_lm(name, V, hidden, layers)
        assert sum(p.numel() for p in model.parameters()) == lm_parameters(name, V, hidden, layers)
        out, state = model(torch.randint(0, V, (3, 4)), model.begin_state(3))
        assert out.shape == (3, 4, V)
    budget = lm_parameters("rnn", V, 64)
    width = hidden_for_budget(name, V, budget)
    assert abs(lm_parameters(name, V, width) - budget) / budget < 0.02


def test_sampling_is_reproducible_by_seed_and_greedy_is_deterministic():
    torch.manual_seed(3)
    model = build_lm("gru", 12, 8)
    prefix = [1, 2, 3]

    def draw(seed):
        return predict(model, prefix, 20, temperature=1.0, generator=torch.Generator().manual_seed(seed))

    assert draw(7) == draw(7) and draw(7) != draw(8)
    assert draw(7)[:3] == prefix and len(draw(7)) == 23
    assert predict(model, prefix, 10) == predict(model, prefix, 10)


# -- masking -------------------------------------------------------------------------------------------


def test_sequence_mask_and_masked_softmax_by_hand():
    X = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    assert sequence_mask(X, torch.tensor([1, 2])).tolist() == [[1, 0, 0], [4, 5, 0]]
    scores = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])  # (B=1, Q=2, K=3)
    p = masked_softmax(scores, torch.tensor([2]))
    e1, e2 = math.exp(1), math.exp(2)
    torch.testing.assert_close(p[0, 0], torch.tensor([e1 / (e1 + e2), e2 / (e1 + e2), 0.0]))
    torch.testing.assert_close(p[0, 1], torch.tensor([0.5, 0.5, 0.0]))
    p = masked_softmax(scores, torch.tensor([[1, 3]]))  # one length per query
    torch.testing.assert_close(p[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(p[0, 1], torch.full((3,), 1 / 3))
    assert torch.isfinite(masked_softmax(scores, torch.tensor([0]))).all()  # no valid key: uniform, not NaN


def test_masked_cross_entropy_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [5.0, -5.0]],
                           [[0.0, 1.0], [1.0, 3.0], [0.0, 0.0]]])  # (B=2, T=3, V=2)
    labels = torch.tensor([[0, 1, 1], [1, 0, 0]])
    valid = torch.tensor([2, 1])
    nll = [-math.log(math.exp(2) / (math.exp(2) + 1)), math.log(2), -math.log(math.e / (1 + math.e))]
    assert float(masked_ce(logits, labels, valid)) == pytest.approx(sum(nll) / 3, rel=1e-6)
    assert float(masked_ce(logits, labels, valid, reduction="sum")) == pytest.approx(sum(nll), rel=1e-6)
    logits.requires_grad_(True)
    masked_ce(logits, labels, valid).backward()
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[1, 1:].abs().sum() == 0  # padding: no gradient


# -- translation models and decoding ---------------------------------------------------------------------

GRU = dict(embed=8, hidden=12, layers=2, dropout=0.0)
RNNSEARCH = dict(GRU, bidirectional=True, deep_output=True)  # Bahdanau et al.'s encoder and output layer
TINY = {"seq2seq": ("seq2seq", GRU), "seq2seq-bi-deep": ("seq2seq", RNNSEARCH),
        "bahdanau": ("bahdanau", GRU), "bahdanau-bi-deep": ("bahdanau", RNNSEARCH),
        "transformer": ("transformer", dict(d_model=16, heads=2, ffn_hidden=16, blocks=2, dropout=0.0))}
BOS, EOS = 2, 3


def tiny_model(case, V=11, seed=0):
    torch.manual_seed(seed)
    name, kwargs = TINY[case]
    return build_translator(name, 13, V, **kwargs).eval()


def test_bidirectional_context_is_each_direction_s_final_state_over_the_real_tokens():
    model = tiny_model("seq2seq-bi-deep")
    src = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 4, 0, 0, 0, 0]])
    with torch.no_grad():
        state = model.encode(src, torch.tensor([4, 2]))
        for i, n in enumerate((4, 2)):  # the GRU alone on the unpadded sentence
            out, _ = model.encoder.rnn(model.encoder.embedding(src[i: i + 1, :n]))
            torch.testing.assert_close(state["context"][i], torch.cat([out[0, -1, :12], out[0, 0, 12:]]))
    assert state["hidden"].shape == (2, 2, 12)  # (B, L, H): the bridge maps both directions to one state
    assert model.dense.in_features == 12 + 24 + 8  # deep output: decoder state, context, previous word


@pytest.mark.parametrize("name", list(TINY))
def test_incremental_decoding_equals_teacher_forcing(name):
    model = tiny_model(name)
    src = torch.randint(4, 13, (3, 6))
    src_valid = torch.tensor([6, 4, 2])
    tgt = torch.randint(4, 11, (3, 5))
    with torch.no_grad():
        full, _ = model.decode(tgt, model.encode(src, src_valid))  # (B, T, V) in one call
        state, steps = model.encode(src, src_valid), []
        for t in range(5):
            logits, state = model.decode(tgt[:, t: t + 1], state)
            steps.append(logits)
    assert full.shape == (3, 5, 11)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(TINY))
def test_padding_of_the_source_does_not_change_the_translation(name):
    model = tiny_model(name)
    src = torch.tensor([[5, 6, 7, 0, 0, 0]])
    longer = torch.tensor([[5, 6, 7, 9, 9, 9]])  # different padding content, same valid length
    tgt = torch.randint(4, 11, (1, 4))
    with torch.no_grad():
        a, _ = model.decode(tgt, model.encode(src, torch.tensor([3])))
        b, _ = model.decode(tgt, model.encode(longer, torch.tensor([3])))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(TINY))
def test_beam_one_equals_greedy(name):
    for seed in range(3):
        model = tiny_model(name, seed=seed)
        if seed == 2:  # a model that likes <eos>: translations end early
            with torch.no_grad():
                model.dense.bias[EOS] += 2.0
        src = torch.randint(4, 13, (4, 6))
        src_valid = torch.tensor([6, 5, 3, 1])
        batch = greedy(model, src, src_valid, BOS, EOS, max_len=8)
        for i in range(4):
            one, _ = beam_search(model, src[i: i + 1], src_valid[i: i + 1], BOS, EOS, max_len=8, beam_size=1)
            assert one == batch[i]
        if seed == 2:
            assert any(len(b) < 8 for b in batch)
        wide, _ = beam_search(model, src[:1], src_valid[:1], BOS, EOS, max_len=8, beam_size=4)
        assert len(wide) <= 8 and EOS not in wide


@pytest.mark.parametrize("case", ["bahdanau", "bahdanau-bi-deep"])
def test_greedy_returns_attention_rows_per_emitted_token(case):
    model = tiny_model(case)
    seqs, attn = greedy(model, torch.randint(4, 13, (2, 5)), torch.tensor([5, 2]), BOS, EOS, 6,
                        with_attention=True)
    for s, a in zip(seqs, attn):
        assert a.shape[1] == 5 and a.shape[0] in (len(s), len(s) + 1)
        torch.testing.assert_close(a.sum(1), torch.ones(a.shape[0]))
    assert attn[1][:, 2:].abs().max() < 1e-6  # the second sentence has 2 real tokens


# -- BLEU --------------------------------------------------------------------------------------------------


def test_d2l_bleu_by_hand_and_d2l_examples():
    assert bleu_d2l("va !".split(), "va !".split()) == 1.0
    # "je perdu ." vs "j'ai perdu .": p1 = 2/3, p2 = 1/2, no brevity penalty
    assert bleu_d2l("je perdu .".split(), "j'ai perdu .".split()) == pytest.approx((2 / 3) ** 0.5 * 0.5**0.25)
    assert bleu_d2l("je perdu .".split(), "j'ai perdu .".split()) == pytest.approx(0.687, abs=5e-4)
    assert bleu_d2l("il est mouillé .".split(), "il est calme .".split()) == pytest.approx(0.658, abs=5e-4)
    assert bleu_d2l("je suis en retard ?".split(), "je suis chez moi .".split()) == pytest.approx(0.447, abs=5e-4)
    assert bleu_d2l("il court .".split(), "il est calme .".split()) == 0.0  # no bigram in common
    # shorter than the label: exp(1 - 4/2) penalty, p1 = p2 = 1
    assert bleu_d2l("je suis".split(), "je suis chez moi".split()) == pytest.approx(math.exp(-1))
    assert bleu_d2l([], ["a"]) == 0.0 and bleu_d2l(["a"], ["a"]) == 0.0  # no bigram to measure


def test_corpus_bleu_by_hand():
    assert corpus_bleu([["a", "b", "c", "d"]], [[["a", "b", "c", "d"]]]) == pytest.approx(1.0)
    # every n-gram matches, hypothesis 4 vs reference 6 tokens: BP = exp(1 - 6/4)
    assert corpus_bleu([["a", "b", "c", "d"]], [[["a", "b", "c", "d", "e", "f"]]]) == pytest.approx(math.exp(-0.5))
    # clipping: "the" x4 matches at most twice; then p2..p4 = 0 -> 0
    assert corpus_bleu([["the"] * 4], [[["the", "cat", "the", "mat"]]]) == 0.0
    # counts add up over the corpus: p1 = 7/8, p2 = 5/6, p3 = 3/4, p4 = 1/2; c = 8 < r = 9
    hyps = [["a", "b", "c", "d"], ["e", "f", "g", "x"]]
    refs = [[["a", "b", "c", "d"]], [["e", "f", "g", "h", "i"], ["z"]]]
    expect = math.exp(1 - 9 / 8) * (7 / 8 * 5 / 6 * 3 / 4 * 1 / 2) ** 0.25
    assert corpus_bleu(hyps, refs) == pytest.approx(expect)


# -- word2vec and classifiers ---------------------------------------------------------------------------------


def test_sigmoid_bce_by_hand_and_against_torch():
    logits = torch.tensor([[1.1, -2.2, 3.3, 4.4], [1.1, 2.2, -3.3, -4.4]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
    first = (sp(-1.1) + sp(-2.2) + sp(3.3) + sp(4.4)) / 4
    second = (sp(1.1) + sp(-2.2)) / 2
    assert float(sigmoid_bce(logits, labels, mask)) == pytest.approx((first + second) / 2, rel=1e-6)
    torch.testing.assert_close(sigmoid_bce(logits, labels, mask), masked_bce_library(logits, labels, mask))


def test_skipgram_scores_neighbours_and_analogies():
    model = SkipGram(6, 3)
    assert model(torch.tensor([0, 1]), torch.tensor([[1, 2, 3], [4, 5, 0]])).shape == (2, 3)
    W = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1], [-1, 0, 0]])
    assert [i for i, _ in nearest(W, 0, 2)] == [1, 2] or [i for i, _ in nearest(W, 0, 2)][0] == 1
    # man : king :: woman : queen on orthogonal "royal" and "gender" axes
    E = torch.tensor([[1.0, 0, 0], [1.0, 0, 1], [0, 1.0, 0], [0, 1.0, 1], [0.2, 0.2, -1]])
    assert analogy(E, 0, 1, 2, 1)[0][0] == 3


@pytest.mark.parametrize("arch", ["textcnn", "bilstm"])
def test_classifiers_shapes_and_padding_invariance(arch):
    torch.manual_seed(0)
    model = build_classifier(arch, 20, 8, **({"channels": 4} if arch == "textcnn" else {"hidden": 6})).eval()
    X = torch.tensor([[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 10, 11, 12]])
    out = model(X, torch.tensor([3, 7]))
    assert out.shape == (2, 2)
    short = model(X[:1, :3], torch.tensor([3]))  # the same sentence without its padding
    if arch == "bilstm":  # packed: padding is never read
        torch.testing.assert_close(out[:1], short)
    assert model(torch.tensor([[3]]), torch.tensor([1])).shape == (1, 2)  # shorter than the widest filter
    np.testing.assert_equal(short.shape, (1, 2))
