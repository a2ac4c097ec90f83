"""BLEU, twice: d2l's per-sentence score and the standard corpus BLEU (Papineni et al. 2002).

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
    """``references[i]`` is the list of reference token lists for ``hypotheses[i]``."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]  # closest; ties -> shorter
        for n in range(1, max_n + 1):
            counts = ngrams(hyp, n)
            max_ref: collections.Counter = collections.Counter()
            for r in refs:
                max_ref |= ngrams(r, n)  # union = elementwise max
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)
