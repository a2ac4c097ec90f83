"""Entries that bring their dependencies (issue 27, deps.py): ``practicum run ENTRY`` first runs, or
reuses by identity, the runs ENTRY reads, and says so in one line; ``--no-deps`` keeps the error
(tests/test_text_catalog.py, tests/test_finetune.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from practicum.config import load_experiment
from practicum.deps import dependencies, is_quick


@pytest.mark.parametrize("entry, overrides, reads", [
    ("sentiment-rt-polarity", [], [("embed.w2v_run", "w2v-ptb")]),
    ("sentiment-rt-polarity", ['train.variants=["textcnn-random"]'], []),  # no w2v variant: reads none
    ("finetune-full", [], [("model.init_from", "fmnist-resnet18")]),
    ("glove-ptb", [], [("eval.beside", "w2v-ptb")]),
    ("ngram-timemachine", [], [("compare.lm_run", "lm-timemachine")]),
    ("sentiment-rt-polarity", ["embed.w2v_run=20261201-000000-abcdef"], []),  # a run by id: nothing to make
    ("mnist-lenet", [], []),
])
def test_what_an_entry_reads(entry, overrides, reads):
    assert dependencies(load_experiment(entry, overrides)) == reads
    assert is_quick(load_experiment(entry, overrides, quick=True)) and not is_quick(load_experiment(entry, overrides))


def test_sentiment_runs_word2vec_first_and_a_second_call_reuses_both(cli, home):
    code, out, err = cli("run", "sentiment-rt-polarity", "--quick", "--no-report")
    assert code == 0, err
    assert err.splitlines()[0] == ("sentiment-rt-polarity reads w2v-ptb (embed.w2v_run): running its quick form first "
                                   "(--no-deps skips this)")
    records = json.loads(cli("runs", "--json")[1])
    assert [(r["experiment"], r["status"]) for r in records] == [("w2v-ptb", "finished"),
                                                                 ("sentiment-rt-polarity", "finished")]
    w2v, sentiment = records
    assert w2v["config_hash"] == load_experiment("w2v-ptb", quick=True).config_hash()  # its quick form, by identity
    source = json.loads((Path(sentiment["dir"]) / "w2v_source.json").read_text())
    assert source["resolved_id"] == w2v["id"]  # ... and the embeddings the sentiment run read

    code, out, err = cli("run", "sentiment-rt-polarity", "--quick", "--no-report")
    assert code == 0, err
    assert err.splitlines()[0] == f"sentiment-rt-polarity reads w2v-ptb (embed.w2v_run): reusing run {w2v['id']} " \
                                  "(--no-deps skips this)"
    assert f"already finished as run {sentiment['id']}" in out
    assert [r["id"] for r in json.loads(cli("runs", "--json")[1])] == [w2v["id"], sentiment["id"]]  # nothing new
