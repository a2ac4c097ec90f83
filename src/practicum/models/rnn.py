"""Character language models: an RNN from scratch next to nn.RNN / nn.GRU / nn.LSTM.

    ids (B, T) -> one-hot (B, T, V) -> recurrent cell(s) -> hidden (B, T, H) -> linear -> logits (B, T, V)

Both kinds take one-hot inputs, as d2l does, so the input matrix is the cell's own (no shared
embedding) and parameter counts follow one formula (``lm_parameters``). ``hidden_for_budget``
picks the width that gives a gated model the plain RNN's parameter count: that is how the
catalog compares them at equal parameters.

The hidden state is carried between calls (``state`` in, ``state`` out) so that sequential
batches continue each other; ``state=None`` starts from zeros (``begin_state``), as torch's cells
do, so a caller (the fit loop's step, under DDP) never needs the model's own methods.
``detach_state`` cuts the graph between batches (truncated BPTT).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from practicum.errors import UsageError

CELLS = {"rnn": (nn.RNN, 1), "gru": (nn.GRU, 3), "lstm": (nn.LSTM, 4)}  # torch class, gates
MODELS = ("rnn_scratch", *CELLS)


class RNNScratch(nn.Module):
    """d2l's RNN from scratch: ``H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)``, ``O_t = H_t W_hq + b_q``.

    Parameters are plain tensors; the time loop is explicit. ``sigma`` = d2l's start, N(0, sigma^2)
    with sigma 0.01. The default (None) starts the weights as nn.RNN / nn.Linear do,
    U(-1/sqrt(fan), 1/sqrt(fan)), so the scratch and library models begin alike: with d2l's tiny
    start, Adam and a 1,448-character vocabulary (lm-jaychou) the scratch RNN sat on the unigram
    plateau for all 20 epochs (training perplexity 346)."""

    def __init__(self, vocab_size: int, hidden: int, sigma: float | None = None):
        super().__init__()
        self.vocab_size, self.hidden = vocab_size, hidden

        def init(*shape, fan: int):
            if sigma is not None:
                return nn.Parameter(torch.randn(*shape) * sigma)
            return nn.Parameter(torch.empty(*shape).uniform_(-fan**-0.5, fan**-0.5))

        self.W_xh = init(vocab_size, hidden, fan=hidden)  # nn.RNN: bound 1/sqrt(hidden) for every weight
        self.W_hh = init(hidden, hidden, fan=hidden)
        self.b_h = nn.Parameter(torch.zeros(hidden))
        self.W_hq = init(hidden, vocab_size, fan=hidden)  # nn.Linear: bound 1/sqrt(in_features)
        self.b_q = nn.Parameter(torch.zeros(vocab_size))

    def begin_state(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, self.hidden, device=self.W_xh.device)  # (B, H)

    def forward(self, X: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:  # X (B, T) ids
        inputs = F.one_hot(X.T, self.vocab_size).to(self.W_xh.dtype)  # (T, B, V): time first, to loop over
        H, outputs = (self.begin_state(X.shape[0]) if state is None else state), []
        for x in inputs:  # x (B, V)
            H = torch.tanh(x @ self.W_xh + H @ self.W_hh + self.b_h)  # (B, H)
            outputs.append(H @ self.W_hq + self.b_q)  # (B, V)
        return torch.stack(outputs, 1), H  # (B, T, V), (B, H)


class RNNLM(nn.Module):
    """The library version: ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` over one-hot inputs + a read-out."""

    def __init__(self, cell: str, vocab_size: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise UsageError(f"unknown recurrent cell '{cell}': use one of {', '.join(CELLS)}")
        self.cell, self.vocab_size, self.hidden, self.layers = cell, vocab_size, hidden, layers
        self.rnn = CELLS[cell][0](vocab_size, hidden, layers, batch_first=True,
                                  dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab_size)

    def begin_state(self, batch_size: int):
        h = torch.zeros(self.layers, batch_size, self.hidden, device=self.out.weight.device)  # (L, B, H)
        return (h, h.clone()) if self.cell == "lstm" else h  # LSTM: (hidden, memory cell)

    def forward(self, X: Tensor, state=None) -> tuple[Tensor, object]:  # X (B, T) ids; None: zeros
        Y, state = self.rnn(F.one_hot(X, self.vocab_size).to(self.out.weight.dtype), state)  # (B, T, H)
        return self.out(Y), state  # (B, T, V)


def build_lm(name: str, vocab_size: int, hidden: int, layers: int = 1, dropout: float = 0.0) -> nn.Module:
    if name == "rnn_scratch":
        if layers != 1:
            raise UsageError("rnn_scratch has one layer; use 'rnn' for deeper networks")
        return RNNScratch(vocab_size, hidden)
    if name not in CELLS:
        raise UsageError(f"unknown language model '{name}': use one of {', '.join(MODELS)}")
    return RNNLM(name, vocab_size, hidden, layers, dropout)


def detach_state(state):
    """Keep the values, drop the graph: the next batch backpropagates only through itself."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def lm_parameters(name: str, vocab_size: int, hidden: int, layers: int = 1) -> int:
    """Parameter count of ``build_lm(name, ...)`` without building it.

    torch cells have two bias vectors per gate (b_ih and b_hh); the scratch RNN has one."""
    V, H = vocab_size, hidden
    if name == "rnn_scratch":
        return V * H + H * H + H + H * V + V
    gates = CELLS[name][1]
    cells = sum(gates * ((V if l == 0 else H) * H + H * H + 2 * H) for l in range(layers))
    return cells + H * V + V


def hidden_for_budget(name: str, vocab_size: int, budget: int, layers: int = 1) -> int:
    """The width whose parameter count is closest to ``budget`` (count grows with the width)."""
    lo, hi = 1, max(2, int(math.sqrt(budget)) + vocab_size)
    while lo < hi:  # smallest width whose count reaches the budget
        mid = (lo + hi) // 2
        if lm_parameters(name, vocab_size, mid, layers) < budget:
            lo = mid + 1
        else:
            hi = mid
    below = max(1, lo - 1)
    return min((below, lo), key=lambda h: abs(lm_parameters(name, vocab_size, h, layers) - budget))


def grad_clipping(params, theta: float) -> float:
    """d2l's clipping from scratch: rescale all gradients so their joint L2 norm is at most theta.
    Returns the norm before clipping (``nn.utils.clip_grad_norm_`` is the library version)."""
    params = [p for p in params if p.grad is not None]
    norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
    if norm > theta:
        for p in params:
            p.grad.mul_(theta / norm)
    return float(norm)


@torch.no_grad()
def predict(model: nn.Module, prefix: list[int], num_preds: int, temperature: float = 0.0,
            generator: torch.Generator | None = None) -> list[int]:
    """Warm the state up on ``prefix``, then emit ``num_preds`` ids: the argmax at temperature 0
    (d2l's ``predict_ch8``), else a draw from softmax(logits / temperature) with ``generator``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    state = model.begin_state(1)
    out = list(prefix)
    if len(prefix) > 1:
        _, state = model(torch.tensor([prefix[:-1]], dtype=torch.long, device=device), state)
    x = torch.tensor([[prefix[-1]]], dtype=torch.long, device=device)
    for _ in range(num_preds):
        logits, state = model(x, state)  # (1, 1, V)
        logits = logits[0, -1]
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, -1).cpu()  # drawn on the CPU: the
            nxt = int(torch.multinomial(probs, 1, generator=generator))  # generator is a CPU one
        else:
            nxt = int(logits.argmax())
        out.append(nxt)
        x = torch.tensor([[nxt]], dtype=torch.long, device=device)
    model.train(was_training)
    return out
