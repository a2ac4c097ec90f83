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
from helpers import practicum, runs

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
    functions = [fn for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = [node.module for fn in functions for node in ast.walk(fn)
              if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("practicum")]
    return {m.rsplit(".", 1)[1] for m in top}, nested


def test_translation_models_import_one_way():
    models = SRC / "practicum" / "models"
    graph = {name: practicum_imports(models / f"{name}.py") for name in ("seq2seq", "transformer", "masking")}
    assert graph["masking"] == (set(), [])
    assert graph["transformer"] == ({"masking"}, [])
    assert graph["seq2seq"][0] == {"masking", "transformer"} and graph["seq2seq"][1] == []


# -- translation batches: trimmed, bucketed by length -------------------------------------------------


def test_translation_batches_are_bucketed_by_length_and_trimmed():
    from practicum.data.arrays import ArrayLoader
    from practicum.practicals.translation import BUCKET_WINDOW, length_buckets, trim

    g = torch.Generator().manual_seed(0)
    n, B = 2 * BUCKET_WINDOW * 8 + 5, 8  # two whole windows and 5 pairs left over
    src_valid, tgt_valid = torch.randint(1, 10, (n,), generator=g), torch.randint(2, 10, (n,), generator=g)
    ids = torch.arange(n)[:, None].expand(n, 10)  # row i holds i: tells which pair a batch row is
    data = {"src": ids, "src_valid": src_valid, "tgt": ids, "tgt_valid": tgt_valid}
    loader = ArrayLoader(data, B, train=True, generator=torch.Generator().manual_seed(1), collate=trim,
                         order_fn=length_buckets(src_valid, tgt_valid, B))
    order = loader.order(0)
    assert sorted(order.tolist()) == list(range(n))  # every pair once
    assert not torch.equal(order, loader.order(1))  # a new order every epoch
    spread, mean, seen = [], [], []
    for i in range(loader.steps_per_epoch):
        src, sv, tgt, tv = loader.batch(order, i)
        assert src.shape[1] == int(sv.max()) and tgt.shape[1] == int(tv.max())  # cut to the longest
        seen += src[:, 0].tolist()
        spread.append(int(tv.max() - tv.min()))
        mean.append(float(tv.float().mean()))
    assert seen == order.tolist() and len(src) == 5  # the short batch comes last
    assert sum(spread[:-1]) / len(spread[:-1]) < 1.0  # sorted within windows: targets of one length per batch
    # the batches are shuffled: unshuffled, their lengths would fall only once (at the window boundary)
    assert sum(b < a for a, b in zip(mean, mean[1:])) > 10


# -- kill -9 mid-epoch, then resume: bit-identical to an uninterrupted run --------------------------

# Runs the CLI with checkpoint.save patched to SIGKILL the process just before it writes
# ``<scope>/last.pt`` at ``step``: what was logged since the previous checkpoint is lost, as in
# any kill between two checkpoints, and the resumed run must drop it and log it again identically.
KILLER = r"""
import os, signal, sys
from pathlib import Path
from practicum.train import checkpoint

scope, step = sys.argv[1], int(sys.argv[2])
save = checkpoint.save

def save_or_die(path, obj, **kw):
    if Path(path).name == "last.pt" and Path(path).parent.name == scope and obj["loop"]["step"] == step:
        os.kill(os.getpid(), signal.SIGKILL)
    save(path, obj, **kw)

checkpoint.save = save_or_die
from practicum.cli import main
sys.exit(main(sys.argv[3:]))
"""


def env_one_thread() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}


def metric_lines(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def same_state(a: dict, b: dict) -> bool:
    """Two (nested) checkpoint dicts hold equal tensors and values."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def killed_then_resumed_equals_reference(cli, home, tmp_path, monkeypatch, args, scope, step, scopes, tables):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))  # the reference: uninterrupted, in-process
    assert cli(*args)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    (ref_dir,) = (p.parent for p in (tmp_path / "ref").glob("*/*/config.toml"))  # a run, not .claims/ or site/

    env = env_one_thread()
    killed = subprocess.run([sys.executable, "-c", KILLER, scope, str(step), *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (record,) = runs(env)
    assert record["status"] == "interrupted"
    run_dir = Path(record["dir"])
    kept = torch.load(run_dir / "checkpoints" / scope / "last.pt", weights_only=True)["loop"]
    assert 0 < kept["position"] and kept["step"] < step, "the resume must start mid-epoch"

    code, _, err = cli(*args)  # the same command again (in this process: the kill was the subprocess's)
    assert code == 0 and "resuming" in err, err
    (record,) = runs(env)
    assert record["status"] == "finished"
    assert metric_lines(ref_dir) == metric_lines(run_dir)  # no line lost or doubled, every value identical
    for name in scopes:
        for ck in ("last.pt", "best.pt"):
            a, b = (torch.load(d / "checkpoints" / name / ck, weights_only=True) for d in (ref_dir, run_dir))
            for c in (a, b):  # wall times, and byte offsets into metrics.jsonl (its time stamps differ)
                c.pop("metrics_position", None)
                c["loop"] = {k: v for k, v in c.get("loop", {}).items() if "seconds" not in k}
            assert same_state(a, b), (name, ck, [k for k in a if not same_state(a[k], b[k])])
    timing = lambda s: {k: v for k, v in s.items() if "seconds" not in k}  # noqa: E731
    assert timing(json.loads((ref_dir / "summary.json").read_text())) == timing(record["summary"])
    for table in tables:  # those without wall times
        assert (ref_dir / "tables" / f"{table}.json").read_text() == (run_dir / "tables" / f"{table}.json").read_text()
    return ref_dir, run_dir


# The quick LM: 5,400 training characters, 32 rows of 35 -> 4 steps per epoch; 3 epochs, a
# checkpoint every 3 steps and at epoch ends, an evaluation every 3 steps (mid-epoch: the carried
# state is set aside and back). Killed before gru's checkpoint at step 8, it resumes from step 6.
LM_ARGS = ["run", "lm-timemachine", "--quick", "--no-report", "-o", 'model.names=["rnn_scratch", "gru"]',
           "-o", "train.epochs=3", "-o", "train.checkpoint_steps=3", "-o", "train.eval_steps=3",
           "-o", "train.log_steps=1"]


def test_language_model_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    ref_dir, run_dir = killed_then_resumed_equals_reference(cli, home, tmp_path, monkeypatch, LM_ARGS, "gru", 8,
                                                            ["rnn_scratch", "gru"], ["2_samples"])
    last = torch.load(run_dir / "checkpoints" / "gru" / "last.pt", weights_only=True)
    assert [len(m["state"]) for m in last["memory"]] == [1]  # gru's (L, B, H) state rode in the checkpoint
    samples = json.loads((run_dir / "tables" / "2_samples.json").read_text())["rows"]
    assert sorted({(r[0], r[1]) for r in samples}) == [(e, m) for e in (1, 2, 3) for m in ("gru", "rnn_scratch")]


# The quick translation with batches of 32: 317 pairs -> 10 steps per epoch (the last one short),
# 2 epochs; killed before the Transformer's checkpoint at step 9, it resumes from step 6.
MT_ARGS = ["run", "mt-fra-eng", "--quick", "--no-report", "-o", 'train.models=["seq2seq", "transformer"]',
           "-o", "optim.batch_size=32", "-o", "train.epochs=2", "-o", "train.checkpoint_steps=3",
           "-o", "train.eval_steps=4", "-o", "train.log_steps=1"]


def test_translation_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    ref_dir, run_dir = killed_then_resumed_equals_reference(
        cli, home, tmp_path, monkeypatch, MT_ARGS, "transformer", 9, ["seq2seq", "transformer"],
        ["2_d2l_sentences", "3_test_examples", "4_bleu_by_length"])
    for name in ("translations.json", "attention.json"):  # decoded from the same kept weights
        assert (ref_dir / name).read_text() == (run_dir / name).read_text()


# -- two DDP processes (gloo) train one LM run ------------------------------------------------------


def test_language_model_on_two_processes_matches_one(cli, home, tmp_path, monkeypatch):
    args = ["run", "lm-timemachine", "--quick", "--no-report", "-o", 'model.names=["rnn_scratch", "gru"]']
    env = env_one_thread()
    out = practicum(*args, "--nproc", "2", env=env)
    assert out.returncode == 0, out.stderr
    assert "on 2 processes" in out.stderr
    (record,) = runs(env)
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    assert len(list(home.glob("lm-timemachine/*/"))) == 1
    # one process, same config: each rank trains 16 of the 32 rows of every batch (its own hidden
    # state), DDP averages the gradients: the same steps as one process, up to rounding
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli(*args)[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    for m in ("rnn_scratch", "gru"):
        two_ppl, one_ppl = record["summary"][f"val/perplexity_{m}"], one["summary"][f"val/perplexity_{m}"]
        assert two_ppl < 28.0 and two_ppl == pytest.approx(one_ppl, rel=1e-3)  # 28: the vocabulary, chance
