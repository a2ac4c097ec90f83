"""Skip-gram and CBOW with negative sampling (Mikolov et al. 2013; d2l 15.1-15.4).

Each word has two vectors. Skip-gram: ``v`` when it is the center, ``u`` when it is a context;
a (center, candidate) pair scores v_c . u_o, pushed up for real contexts and down for noise
words through a binary cross-entropy:

    loss = -log sigmoid(v_c . u_o) - sum_noise log sigmoid(-v_c . u_k)

CBOW (d2l 15.1.4) turns it round: the *mean* of the context words' vectors v predicts the
center word's vector u, against the same kind of noise words:

    v_bar = mean_o v_o     loss = -log sigmoid(u_c . v_bar) - sum_noise log sigmoid(-u_k . v_bar)

In both the vectors a run saves (``words``) are the ones the model reads its input with: the
center vectors of skip-gram, the context vectors of CBOW (d2l: "in CBOW the context word
vectors are used as the word representations"; word2vec's C code saves syn0 for both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SkipGram(nn.Module):
    def __init__(self, vocab_size: int, embed: int):
        super().__init__()
        self.center = nn.Embedding(vocab_size, embed)  # v
        self.context = nn.Embedding(vocab_size, embed)  # u
        # d2l initialises both with Xavier-uniform (|w| < sqrt(6 / (V + E)) ~ 0.03): scores start near 0
        # and the loss near log 2. torch's N(0, 1) default gives scores ~ N(0, E), saturated sigmoids,
        # and Adam at lr 0.002 needs many epochs to undo it.
        nn.init.xavier_uniform_(self.center.weight)
        nn.init.xavier_uniform_(self.context.weight)

    def forward(self, centers: Tensor, contexts_negatives: Tensor) -> Tensor:
        v = self.center(centers)  # (B, E)
        u = self.context(contexts_negatives)  # (B, L, E)
        return torch.einsum("be,ble->bl", v, u)  # (B, L) scores

    @property
    def words(self) -> Tensor:
        return self.center.weight  # (V, E)


class CBOW(nn.Module):
    """Continuous bag of words: ``forward(contexts (B, 2W), context_mask (B, 2W), targets (B, 1 + K))``
    -> (B, 1 + K) scores of the mean context vector against the center word (column 0) and K
    noise words. Padding slots of ``contexts`` (mask 0) do not enter the mean."""

    def __init__(self, vocab_size: int, embed: int):
        super().__init__()
        self.context = nn.Embedding(vocab_size, embed)  # v, averaged over the window: the embeddings
        self.center = nn.Embedding(vocab_size, embed)  # u, of the word to predict and of the noise
        nn.init.xavier_uniform_(self.context.weight)  # as SkipGram: scores start near 0
        nn.init.xavier_uniform_(self.center.weight)

    def forward(self, contexts: Tensor, context_mask: Tensor, targets: Tensor) -> Tensor:
        m = context_mask.unsqueeze(-1)  # (B, 2W, 1)
        v_bar = (self.context(contexts) * m).sum(1) / m.sum(1)  # (B, E): every example has a context
        u = self.center(targets)  # (B, 1 + K, E)
        return torch.einsum("be,ble->bl", v_bar, u)  # (B, 1 + K) scores

    @property
    def words(self) -> Tensor:
        return self.context.weight  # (V, E)


def sigmoid_bce(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """From scratch: -[y log s(x) + (1 - y) log s(-x)] = softplus(-x) if y else softplus(x),
    averaged over each example's real slots (mask), then over the batch (d2l's SigmoidBCELoss).
    ``masked_bce_library`` is the same with torch's loss."""
    per_slot = labels * F.softplus(-logits) + (1 - labels) * F.softplus(logits)  # (B, L)
    return ((per_slot * mask).sum(1) / mask.sum(1)).mean()


def masked_bce_library(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    per_slot = F.binary_cross_entropy_with_logits(logits, labels, weight=mask, reduction="none")
    return (per_slot.sum(1) / mask.sum(1)).mean()


@torch.no_grad()
def nearest(W: Tensor, query: int, k: int, exclude: tuple[int, ...] = ()) -> list[tuple[int, float]]:
    """The k rows of W most cosine-similar to row ``query`` (itself and ``exclude`` left out)."""
    return nearest_to(W, W[query], k, (query, *exclude))


@torch.no_grad()
def nearest_to(W: Tensor, x: Tensor, k: int, exclude: tuple[int, ...] = ()) -> list[tuple[int, float]]:
    cos = (W @ x) / (W.norm(dim=1) * x.norm() + 1e-9)  # (V,)
    cos[list(exclude)] = -float("inf")
    top = cos.topk(k)
    return list(zip(top.indices.tolist(), top.values.tolist()))


@torch.no_grad()
def analogy(W: Tensor, a: int, b: int, c: int, k: int = 5) -> list[tuple[int, float]]:
    """a : b :: c : ?  by 3CosAdd on unit vectors: argmax cos(x, b - a + c), a b c excluded."""
    U = W / W.norm(dim=1, keepdim=True).clamp(min=1e-9)
    return nearest_to(U, U[b] - U[a] + U[c], k, (a, b, c))
