"""The Transformer (Vaswani et al. 2017) for translation, in plain torch, as d2l 11.7 builds it:
post-norm blocks (``LayerNorm(x + Dropout(sublayer(x)))``), sinusoidal positions, embeddings
scaled by sqrt(d_model), masks as valid lengths through ``masked_softmax``.

    src (B, S) -> embed*sqrt(d) + PE -> N x [self-attn, add&norm, FFN, add&norm] -> memory (B, S, d)
    tgt (B, t) -> embed*sqrt(d) + PE -> N x [causal self-attn, add&norm,
                                            attn over memory, add&norm, FFN, add&norm] -> linear -> (B, t, V)

Inference keeps the tokens decoded so far in the state and re-runs the decoder over the whole
prefix at every step (O(t^2), and t <= 10 here): exactly the computation training does, with no
key/value cache to get wrong.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from practicum.models.masking import masked_softmax


class PositionalEncoding(nn.Module):
    """P[pos, 2i] = sin(pos / 10000^(2i/d)), P[pos, 2i+1] = cos(same)."""

    def __init__(self, d: int, dropout: float, max_len: int = 1000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
        div = torch.pow(10000, torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d/2,)
        P = torch.zeros(1, max_len, d)
        P[0, :, 0::2] = torch.sin(pos / div)
        P[0, :, 1::2] = torch.cos(pos / div)[:, : d // 2]
        self.register_buffer("P", P, persistent=False)

    def forward(self, X: Tensor) -> Tensor:  # (B, T, d)
        return self.dropout(X + self.P[:, : X.shape[1]])


class MultiHeadAttention(nn.Module):
    """h heads of scaled dot-product attention on d/h-wide projections, computed in one batch."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        assert d % heads == 0, "d_model must be divisible by the number of heads"
        self.heads = heads
        self.W_q, self.W_k = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.W_v, self.W_o = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.dropout = nn.Dropout(dropout)

    def split(self, X: Tensor) -> Tensor:  # (B, T, d) -> (B*h, T, d/h)
        B, T, d = X.shape
        return X.reshape(B, T, self.heads, d // self.heads).transpose(1, 2).reshape(B * self.heads, T, -1)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, valid_lens: Tensor | None) -> Tensor:
        B, Q, d = queries.shape
        q, k, v = self.split(self.W_q(queries)), self.split(self.W_k(keys)), self.split(self.W_v(values))
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B*h, Q, K)
        if valid_lens is not None:  # every head of an example sees the same mask
            valid_lens = valid_lens.repeat_interleave(self.heads, dim=0)
        weights = masked_softmax(scores, valid_lens)  # (B*h, Q, K)
        self.attention_weights = weights.reshape(B, self.heads, Q, -1)
        out = self.dropout(weights) @ v  # (B*h, Q, d/h)
        return self.W_o(out.reshape(B, self.heads, Q, -1).transpose(1, 2).reshape(B, Q, d))


class AddNorm(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.dropout, self.ln = nn.Dropout(dropout), nn.LayerNorm(d)

    def forward(self, X: Tensor, Y: Tensor) -> Tensor:
        return self.ln(X + self.dropout(Y))  # residual, then normalise


def ffn(d: int, hidden: int) -> nn.Sequential:
    """The position-wise feed-forward network: the same MLP at every position."""
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))


class EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, ffn_hidden: int, dropout: float):
        super().__init__()
        self.attention, self.addnorm1 = MultiHeadAttention(d, heads, dropout), AddNorm(d, dropout)
        self.ffn, self.addnorm2 = ffn(d, ffn_hidden), AddNorm(d, dropout)

    def forward(self, X: Tensor, valid_lens: Tensor) -> Tensor:  # (B, S, d)
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class DecoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, ffn_hidden: int, dropout: float):
        super().__init__()
        self.self_attention, self.addnorm1 = MultiHeadAttention(d, heads, dropout), AddNorm(d, dropout)
        self.cross_attention, self.addnorm2 = MultiHeadAttention(d, heads, dropout), AddNorm(d, dropout)
        self.ffn, self.addnorm3 = ffn(d, ffn_hidden), AddNorm(d, dropout)

    def forward(self, X: Tensor, memory: Tensor, src_valid: Tensor) -> Tensor:  # X (B, t, d)
        B, t, _ = X.shape
        causal = torch.arange(1, t + 1, device=X.device).repeat(B, 1)  # (B, t): query i sees keys 0..i
        Y = self.addnorm1(X, self.self_attention(X, X, X, causal))
        Z = self.addnorm2(Y, self.cross_attention(Y, memory, memory, src_valid))
        return self.addnorm3(Z, self.ffn(Z))


class Transformer(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 256, heads: int = 4, ffn_hidden: int = 512,
                 blocks: int = 2, dropout: float = 0.2):
        super().__init__()
        self.d = d_model
        self.src_embedding = nn.Embedding(src_vocab, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab, d_model)
        self.pos = PositionalEncoding(d_model, dropout)
        self.encoder = nn.ModuleList(EncoderBlock(d_model, heads, ffn_hidden, dropout) for _ in range(blocks))
        self.decoder = nn.ModuleList(DecoderBlock(d_model, heads, ffn_hidden, dropout) for _ in range(blocks))
        self.dense = nn.Linear(d_model, tgt_vocab)

    def encode(self, src: Tensor, src_valid: Tensor) -> dict:
        X = self.pos(self.src_embedding(src) * math.sqrt(self.d))  # (B, S, d): scaled to PE's size
        for block in self.encoder:
            X = block(X, src_valid)
        return {"memory": X, "src_valid": src_valid, "prefix": src.new_zeros(src.shape[0], 0)}

    def decode(self, tgt: Tensor, state: dict) -> tuple[Tensor, dict]:
        full = torch.cat([state["prefix"], tgt], 1)  # (B, t_prev + t): everything decoded so far
        X = self.pos(self.tgt_embedding(full) * math.sqrt(self.d))
        for block in self.decoder:
            X = block(X, state["memory"], state["src_valid"])
        # the last block's attention over the source, averaged over heads: (B, t, S)
        self.attention_weights = self.decoder[-1].cross_attention.attention_weights.mean(1)[:, -tgt.shape[1]:]
        return self.dense(X[:, -tgt.shape[1]:]), {**state, "prefix": full}  # logits (B, t, V)

    def forward(self, src: Tensor, src_valid: Tensor, dec_in: Tensor) -> Tensor:
        return self.decode(dec_in, self.encode(src, src_valid))[0]  # (B, t, V): teacher forcing
