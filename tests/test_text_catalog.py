"""Every text catalog entry end to end on a tiny slice (--quick), and the word2vec -> sentiment
hand-over by run id. (The language model's and the translator's resume after kill -9:
tests/test_text_seq_engine.py.)"""

import json

import pytest
import torch
from helpers import latest_run, meets_quick_band, table

from practicum.config import load_experiment


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The tasks set torch's thread count for their process; give other tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


TEXT_ENTRIES = ["lm-timemachine", "lm-jaychou", "mt-fra-eng", "w2v-ptb", "sentiment-rt-polarity",
                "sentiment-imdb-tiny"]


@pytest.mark.parametrize("name", ["lm-timemachine", "lm-jaychou"])
def test_language_model_entries_run_quick(cli, name):
    code, _, err = cli("run", name, "--quick", "--no-report")
    assert code == 0, err
    run_dir = latest_run(cli, name)
    meets_quick_band(run_dir, name)
    summary = json.loads((run_dir / "summary.json").read_text())
    models = ["rnn_scratch", "rnn", "gru", "lstm"]
    for m in models:
        assert summary[f"val/perplexity_{m}"] > 1.0 and summary[f"train/perplexity_{m}"] > 1.0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows if r["name"] == "perplexity"} == {f"{s}-{m}" for s in ("train", "val")
                                                                      for m in models}
    params = {r[0]: r[2] for r in table(run_dir, "1_models")["rows"]}
    assert max(params.values()) / min(params.values()) < 1.05  # equal parameter counts
    samples = table(run_dir, "2_samples")["rows"]
    prefixes = load_experiment(name).sample.prefixes
    assert {r[2] for r in samples} == set(prefixes) and {r[1] for r in samples} == set(models)
    assert all(r[3].startswith(r[2]) and r[4].startswith(r[2]) for r in samples)
    splits = json.loads((run_dir / "splits.json").read_text())
    assert splits["train"][1] == splits["val"][0]
    for m in models:  # the best validation perplexity's weights are kept
        best = torch.load(run_dir / "checkpoints" / m / "best.pt", weights_only=True)
        assert best["metric"] == "val/perplexity" and best["score"] == pytest.approx(summary[f"val/perplexity_{m}"])


def test_translation_entry_runs_quick_with_report(cli):
    code, _, err = cli("run", "mt-fra-eng", "--quick")
    assert code == 0, err
    run_dir = latest_run(cli, "mt-fra-eng")
    meets_quick_band(run_dir, "mt-fra-eng")
    bleu = table(run_dir, "1_bleu")
    assert [r[0] for r in bleu["rows"]] == ["seq2seq", "bahdanau", "transformer"]
    assert all(0.0 <= r[5] <= 1.0 and 0.0 <= r[6] <= 1.0 for r in bleu["rows"])
    sentences = table(run_dir, "2_d2l_sentences")["rows"]
    assert len(sentences) == 12 and {r[0] for r in sentences} == {"go .", "i lost .", "he's calm .", "i'm home ."}
    for name in ("attention_bahdanau.png", "attention_transformer.png"):
        assert (run_dir / "figures" / name).stat().st_size > 1000
    splits = json.loads((run_dir / "splits.json").read_text())
    assert splits["sizes"]["test"] == 30 and len(splits["indices"]["test"]) == 30
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "held-out test" in html and html.count("data:image/png;base64,") >= 3


def test_word2vec_then_sentiment_from_its_embeddings(cli, home):
    code, _, err = cli("run", "sentiment-imdb-tiny", "--quick", "--no-report", "--no-deps")
    assert code == 1 and "no finished run of 'w2v-ptb'" in err  # says what to run first

    code, _, err = cli("run", "w2v-ptb", "--quick", "--no-report")
    assert code == 0, err
    w2v_dir = latest_run(cli, "w2v-ptb")
    meets_quick_band(w2v_dir, "w2v-ptb")
    import numpy as np

    emb = np.load(w2v_dir / "embeddings.npy", allow_pickle=False)
    vocab = json.loads((w2v_dir / "vocab.json").read_text())["idx_to_token"]
    assert emb.shape == (len(vocab), 100) and np.isfinite(emb).all()
    assert table(w2v_dir, "1_neighbours")["rows"][0][0] == "chip"
    assert len(table(w2v_dir, "2_analogies")["rows"]) == 10

    for name in ("sentiment-rt-polarity", "sentiment-imdb-tiny"):
        code, _, err = cli("run", name, "--quick", "--no-report")
        assert code == 0, err
        run_dir = latest_run(cli, name)
        meets_quick_band(run_dir, name)
        source = json.loads((run_dir / "w2v_source.json").read_text())
        assert source["resolved_id"] == w2v_dir.name  # the run it loaded, by id
        variants = [r[0] for r in table(run_dir, "1_accuracy")["rows"]]
        assert sorted(variants) == ["bilstm-random", "bilstm-w2v", "textcnn-random", "textcnn-w2v"]
        assert [r[0] for r in table(run_dir, "2_w2v_init")["rows"]] == ["textcnn", "bilstm"]
    rt = json.loads((latest_run(cli, "sentiment-rt-polarity") / "splits.json").read_text())
    assert rt["sizes"] == {"test": 60, "val": 60, "train": 480}

    # pinning the word2vec run by id works too; a wrong id is a usage error naming it
    code, _, err = cli("run", "sentiment-imdb-tiny", "--quick", "--no-report", "-o",
                       f"embed.w2v_run={w2v_dir.name}", "-o", 'train.variants=["textcnn-w2v"]')
    assert code == 0, err
    code, _, err = cli("run", "sentiment-imdb-tiny", "--quick", "--no-report", "-o", "embed.w2v_run=nosuchrun")
    assert code == 2 and "nosuchrun" in err


def test_every_text_entry_is_in_the_catalog():
    from practicum.config import catalog

    assert set(TEXT_ENTRIES) <= set(catalog())
