"""BLEU, twice: d2l's per-sentence score (the lesson, written out) and the standard corpus BLEU
(Papineni et al. 2002, through torchmetrics).

Both take token lists (already split on spaces), so they score exactly what the models emit.

d2l's ``bleu(pred, label, k)`` = exp(min(0, 1 - len_label / len_pred)) * prod_{n=1..k} p_n^(1/2^n),
with p_n the clipped n-gram precision: longer n-grams weigh more, and a prediction shorter than
its label is penalised. d2l divides by zero when the prediction has fewer than k tokens; here a
missing n-gram order has precision 0 (score 0), and an empty prediction scores 0.

Corpus BLEU-4: clipped n-gram counts summed over the whole corpus (each hypothesis clipped by the
maximum count in any of its references), geometric mean of p_1..p_4 with equal weights, and the
brevity penalty exp(1 - r/c) when the total hypothesis length c is below r, the sum of each
hypothesis' closest reference length (ties: the shorter). No smoothing: any p_n = 0 gives 0.
"""

from __future__ import annotations

import collections
import math
from typing import Sequence

from torchmetrics.text import BLEUScore


def ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


def bleu_d2l(pred: Sequence[str], label: Sequence[str], k: int = 2) -> float:
    len_pred, len_label = len(pred), len(label)
    if len_pred == 0:
        return 0.0
    score = math.exp(min(0.0, 1 - len_label / len_pred))
    for n in range(1, k + 1):
        if len_pred - n + 1 <= 0:
            return 0.0
        label_subs = ngrams(label, n)
        matches = 0
        for gram, count in ngrams(pred, n).items():
            matches += min(count, label_subs[gram])
        score *= (matches / (len_pred - n + 1)) ** (0.5**n)
    return score


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
                max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` through torchmetrics' ``BLEUScore``; ``references[i]`` is the list of
    reference token lists for ``hypotheses[i]``.

    torchmetrics re-splits each sentence on whitespace (our tokens hold none), and of two
    references equally close in length it takes the first: sorted by length, the first is the
    shorter, the standard rule (Papineni et al.; NLTK's ``closest_ref_length``).
    tests/test_text_seq_engine.py holds it to a hand-written corpus BLEU (they agree to ~1e-7)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    metric = BLEUScore(n_gram=max_n)
    metric.update([" ".join(h) for h in hypotheses],
                  [[" ".join(r) for r in sorted(refs, key=len)] for refs in references])
    return float(metric.compute())
