"""Encoder-decoder translation with GRUs, without and with additive (Bahdanau) attention, the
decoders that every translation model shares (greedy and beam search), and ``build_translator``.

A translation model here has three methods (the Transformer in transformer.py has the same):

    encode(src (B, S), src_valid (B,)) -> state: dict of batch-first tensors
    decode(tgt (B, t), state)          -> logits (B, t, V), state
    forward(src, src_valid, dec_in)    -> logits (B, t, V): encode, then decode the whole dec_in

Training calls the model itself (``forward``, teacher forcing: the shifted target in one call),
so DDP and autocast, which wrap ``forward``, see the whole step. Inference calls ``decode`` one
token at a time; the state carries whatever the next call needs. Keeping every state tensor
batch-first lets beam search reorder hypotheses with one ``v[idx]``.
Models that attend set ``self.attention_weights`` (B, t, S) after each ``decode``.

Imports run one way: seq2seq -> transformer -> masking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from practicum.errors import UsageError
from practicum.models.masking import masked_softmax
from practicum.models.transformer import Transformer

# ---------------------------------------------------------------------------------------------
# GRU encoder-decoder (d2l 10.7) and additive attention (d2l 11.4)


class GRUEncoder(nn.Module):
    """Embedding + multi-layer GRU. Padding is packed away, so the final state is the one after
    each sentence's real last token (d2l runs the GRU over the padding too).

    ``bidirectional``: Bahdanau et al.'s encoder. Each output is then [forward; backward] (2H), a
    summary of the words around position j rather than of the prefix up to j, and the decoder
    starts from tanh(W [forward final; backward final]) per layer (their s_0)."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int, dropout: float,
                 bidirectional: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = nn.GRU(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True,
                          bidirectional=bidirectional)
        self.bidirectional = bidirectional
        self.out_size = 2 * hidden if bidirectional else hidden
        self.bridge = nn.Linear(2 * hidden, hidden) if bidirectional else None

    def forward(self, src: Tensor, src_valid: Tensor) -> tuple[Tensor, Tensor]:
        packed = pack_padded_sequence(self.embedding(src), src_valid.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        if self.bidirectional:  # (2L, B, H), layer-major -> (L, B, 2H) -> the decoder's (L, B, H)
            hidden = torch.tanh(self.bridge(torch.cat([hidden[0::2], hidden[1::2]], -1)))
        return outputs, hidden  # (B, S, out_size) zero at padding, (L, B, H)


class Seq2Seq(nn.Module):
    """d2l's plain seq2seq: the decoder starts from the encoder's final state, and the top layer's
    final state (the context, one vector for the whole sentence) joins every decoder input.

    ``bidirectional``: the context is the top layer's [forward final; backward final].
    ``deep_output``: the prediction reads [decoder output; context; previous word's embedding]
    (Cho et al. 2014's and Bahdanau et al.'s output layer; d2l reads the decoder output only)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int = 256, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.2, bidirectional: bool = False, deep_output: bool = False):
        super().__init__()
        self.encoder = GRUEncoder(src_vocab, embed, hidden, layers, dropout, bidirectional)
        context = self.encoder.out_size
        self.embedding = nn.Embedding(tgt_vocab, embed)
        self.rnn = nn.GRU(embed + context, hidden, layers, dropout=dropout if layers > 1 else 0.0,
                          batch_first=True)
        self.deep_output = deep_output
        self.dense = nn.Linear(hidden + (context + embed if deep_output else 0), tgt_vocab)

    def encode(self, src: Tensor, src_valid: Tensor) -> dict:
        outputs, hidden = self.encoder(src, src_valid)  # (B, S, C), (L, B, H)
        if self.encoder.bidirectional:  # forward's last real step, backward's first step
            last = (src_valid - 1).clamp(min=0)
            h = outputs.shape[-1] // 2
            context = torch.cat([outputs[torch.arange(len(last)), last, :h], outputs[:, 0, h:]], -1)
        else:
            context = hidden[-1]
        return {"hidden": hidden.transpose(0, 1), "context": context}  # (B, L, H), (B, C)

    def decode(self, tgt: Tensor, state: dict) -> tuple[Tensor, dict]:
        emb = self.embedding(tgt)  # (B, t, E)
        context = state["context"][:, None].expand(-1, tgt.shape[1], -1)  # (B, t, C)
        out, hidden = self.rnn(torch.cat([emb, context], -1), state["hidden"].transpose(0, 1).contiguous())
        if self.deep_output:
            out = torch.cat([out, context, emb], -1)
        return self.dense(out), {**state, "hidden": hidden.transpose(0, 1)}  # (B, t, V)

    def forward(self, src: Tensor, src_valid: Tensor, dec_in: Tensor) -> Tensor:
        return self.decode(dec_in, self.encode(src, src_valid))[0]  # (B, t, V)


class AdditiveAttention(nn.Module):
    """score(q, k) = w_v . tanh(W_q q + W_k k): queries and keys may differ in size."""

    def __init__(self, key_size: int, query_size: int, hidden: int, dropout: float):
        super().__init__()
        self.W_k = nn.Linear(key_size, hidden, bias=False)
        self.W_q = nn.Linear(query_size, hidden, bias=False)
        self.w_v = nn.Linear(hidden, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, valid_lens: Tensor | None,
                projected_keys: Tensor | None = None) -> Tensor:
        k = projected_keys if projected_keys is not None else self.W_k(keys)  # (B, K, h)
        features = torch.tanh(self.W_q(queries)[:, :, None] + k[:, None])  # (B, Q, K, h)
        scores = self.w_v(features).squeeze(-1)  # (B, Q, K)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)  # (B, Q, V_dim)


class Bahdanau(nn.Module):
    """Seq2seq whose context is recomputed at every step: the decoder's previous top-layer state
    queries all encoder outputs (Bahdanau et al. 2015, as d2l builds it). ``bidirectional`` and
    ``deep_output`` as in ``Seq2Seq``: with both, the paper's RNNsearch (a linear output layer in
    place of its maxout)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int = 256, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.2, bidirectional: bool = False, deep_output: bool = False):
        super().__init__()
        self.encoder = GRUEncoder(src_vocab, embed, hidden, layers, dropout, bidirectional)
        context = self.encoder.out_size
        self.attention = AdditiveAttention(context, hidden, hidden, dropout)
        self.embedding = nn.Embedding(tgt_vocab, embed)
        self.rnn = nn.GRU(embed + context, hidden, layers, dropout=dropout if layers > 1 else 0.0,
                          batch_first=True)
        self.deep_output = deep_output
        self.dense = nn.Linear(hidden + (context + embed if deep_output else 0), tgt_vocab)

    def encode(self, src: Tensor, src_valid: Tensor) -> dict:
        outputs, hidden = self.encoder(src, src_valid)
        return {"enc_outputs": outputs, "keys": self.attention.W_k(outputs),  # keys projected once
                "src_valid": src_valid, "hidden": hidden.transpose(0, 1)}  # (B,S,C) (B,S,H) (B,) (B,L,H)

    def decode(self, tgt: Tensor, state: dict) -> tuple[Tensor, dict]:
        emb = self.embedding(tgt)  # (B, t, E)
        hidden = state["hidden"].transpose(0, 1).contiguous()  # (L, B, H)
        outputs, weights = [], []
        for i in range(tgt.shape[1]):  # the query depends on the previous step: a loop
            query = hidden[-1][:, None]  # (B, 1, H)
            context = self.attention(query, state["enc_outputs"], state["enc_outputs"], state["src_valid"],
                                     projected_keys=state["keys"])  # (B, 1, C)
            x = torch.cat([emb[:, i: i + 1], context], -1)
            out, hidden = self.rnn(x, hidden)  # (B, 1, H)
            outputs.append(torch.cat([out, x], -1) if self.deep_output else out)
            weights.append(self.attention.attention_weights)  # (B, 1, S)
        self.attention_weights = torch.cat(weights, 1)  # (B, t, S)
        return self.dense(torch.cat(outputs, 1)), {**state, "hidden": hidden.transpose(0, 1)}

    def forward(self, src: Tensor, src_valid: Tensor, dec_in: Tensor) -> Tensor:
        return self.decode(dec_in, self.encode(src, src_valid))[0]  # (B, t, V)


# ---------------------------------------------------------------------------------------------
# Decoding


def reorder(state: dict, idx: Tensor) -> dict:
    """Select rows ``idx`` of every (batch-first) state tensor."""
    return {k: v[idx] for k, v in state.items()}


def cut_at_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


@torch.no_grad()
def greedy(model: nn.Module, src: Tensor, src_valid: Tensor, bos: int, eos: int, max_len: int,
           with_attention: bool = False):
    """Batched greedy decoding: a list of id lists (each cut before its <eos>) and, if asked, each
    sentence's attention rows (list of (t, S) tensors, one row per emitted token incl. <eos>)."""
    state = model.encode(src, src_valid)
    B = src.shape[0]
    tok = torch.full((B, 1), bos, dtype=torch.long, device=src.device)
    out, attn = [], []
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits, state = model.decode(tok, state)  # (B, 1, V)
        tok = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out.append(tok)
        if with_attention:
            attn.append(model.attention_weights[:, -1])  # (B, S): the newest token's row
        done |= tok[:, 0] == eos
        if bool(done.all()):
            break
    ids = torch.cat(out, 1).tolist()
    seqs = [cut_at_eos(row, eos) for row in ids]
    if not with_attention:
        return seqs
    rows = torch.stack(attn, 1).float().cpu()  # (B, t, S)
    return seqs, [rows[b, : len(seqs[b]) + (1 if len(seqs[b]) < rows.shape[1] else 0)] for b in range(B)]


@torch.no_grad()
def beam_search(model: nn.Module, src: Tensor, src_valid: Tensor, bos: int, eos: int, max_len: int,
                beam_size: int = 4, alpha: float = 0.75) -> tuple[list[int], float]:
    """One sentence (src (1, S)): keep the ``beam_size`` best partial translations by summed
    log-probability; a hypothesis that emits <eos> is finished (and leaves the beam, which
    shrinks). At the end the best finished one by d2l's score ``log P / L**alpha`` wins.
    With beam_size 1 this is exactly greedy decoding."""
    device = src.device
    state = model.encode(src, src_valid)
    hyps: list[list[int]] = [[]]
    scores = torch.zeros(1, device=device)  # (k,) summed log-probabilities
    tok = torch.full((1, 1), bos, dtype=torch.long, device=device)
    finished: list[tuple[float, list[int]]] = []
    for step in range(max_len):
        logits, state = model.decode(tok, state)  # (k, 1, V)
        logp = F.log_softmax(logits[:, -1].float(), -1)  # (k, V)
        V = logp.shape[-1]
        total = (scores[:, None] + logp).reshape(-1)  # (k*V,)
        best, flat = total.topk(min(beam_size - len(finished), total.numel()))
        keep_rows, keep_tok, keep_scores = [], [], []
        for s, f in zip(best.tolist(), flat.tolist()):
            row, t = divmod(f, V)
            if t == eos:
                finished.append((s / (len(hyps[row]) + 1) ** alpha, hyps[row]))  # length counts <eos>
            else:
                keep_rows.append(row)
                keep_tok.append(t)
                keep_scores.append(s)
        if not keep_rows:
            break
        hyps = [hyps[r] + [t] for r, t in zip(keep_rows, keep_tok)]
        scores = torch.tensor(keep_scores, device=device)
        state = reorder(state, torch.tensor(keep_rows, device=device))
        tok = torch.tensor(keep_tok, device=device)[:, None]
        if step == max_len - 1:  # out of room: unfinished hypotheses count as they are
            finished += [(s / len(h) ** alpha, h) for s, h in zip(keep_scores, hyps)]
    best_score, best_hyp = max(finished, key=lambda x: x[0])
    return best_hyp, best_score


def build_translator(name: str, src_vocab: int, tgt_vocab: int, **kwargs) -> nn.Module:
    if name == "seq2seq":
        return Seq2Seq(src_vocab, tgt_vocab, **kwargs)
    if name == "bahdanau":
        return Bahdanau(src_vocab, tgt_vocab, **kwargs)
    if name == "transformer":
        return Transformer(src_vocab, tgt_vocab, **kwargs)
    raise UsageError(f"unknown translation model '{name}': use seq2seq, bahdanau or transformer")

