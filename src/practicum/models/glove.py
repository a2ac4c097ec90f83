"""GloVe: global vectors from the co-occurrence counts (Pennington et al. 2014; d2l 15.5).

Skip-gram's cross-entropy over a window, summed over the corpus, weighs every pair by how often
it occurs and needs a normalised distribution over the whole vocabulary. GloVe fits the counts
themselves, once, by weighted least squares on the log counts:

    loss = sum over nonzero x_ij of  h(x_ij) (v_i . u_j + b_i + c_j - log x_ij)^2

    h(x) = (x / x_max)^alpha  if x < x_max,  else 1      (x_max = 100, alpha = 3/4)

h keeps rare pairs (noisy counts) from weighing much and caps frequent ones ("the", "of") at 1;
h(0) = 0, so only the nonzero entries enter. v (center) and u (context) play the same part (X
is symmetric); the word vectors are their sum, as the paper does.
"""

from __future__ import annotations

from torch import Tensor, nn


class GloVe(nn.Module):
    def __init__(self, vocab_size: int, embed: int):
        super().__init__()
        self.center = nn.Embedding(vocab_size, embed)  # v
        self.context = nn.Embedding(vocab_size, embed)  # u
        self.center_bias = nn.Embedding(vocab_size, 1)  # b
        self.context_bias = nn.Embedding(vocab_size, 1)  # c
        for table in (self.center, self.context, self.center_bias, self.context_bias):
            nn.init.uniform_(table.weight, -0.5 / embed, 0.5 / embed)  # glove.c's (rand - 0.5) / dim

    def forward(self, i: Tensor, j: Tensor) -> Tensor:
        """(B,) rows and columns of X -> (B,) predicted log counts v_i . u_j + b_i + c_j."""
        dot = (self.center(i) * self.context(j)).sum(-1)  # (B,)
        return dot + self.center_bias(i).squeeze(-1) + self.context_bias(j).squeeze(-1)

    @property
    def words(self) -> Tensor:
        return self.center.weight + self.context.weight  # (V, E)


def weighting(x: Tensor, x_max: float = 100.0, alpha: float = 0.75) -> Tensor:
    """h(x) = (x / x_max)^alpha below x_max, 1 from there on."""
    return (x / x_max).pow(alpha).clamp(max=1.0)


def glove_loss(pred: Tensor, x: Tensor, x_max: float = 100.0, alpha: float = 0.75) -> Tensor:
    """The weighted squared error of the predicted log counts, averaged over the batch's entries."""
    return (weighting(x, x_max, alpha) * (pred - x.log()) ** 2).mean()
