"""Seed 003's CBOW, GloVe, AutoAugment / RandAugment / AugMix (issue 18): each from-scratch piece
against a hand computation, torch or PIL, and each new entry end to end on its quick form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import latest_run, meets_quick_band, one_thread_env, table

from practicum.config import load_experiment


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The tasks set torch's thread count for their process; give other tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# CBOW


def test_cbow_scores_loss_and_gradients_match_a_hand_computation():
    from practicum.models.word2vec import CBOW, sigmoid_bce

    torch.manual_seed(0)
    model = CBOW(7, 3)
    contexts = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6]])  # the first row has two real contexts
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    targets = torch.tensor([[0, 5, 6], [2, 1, 1]])  # center, then two noise words (one drawn twice)
    labels = torch.tensor([[1.0, 0, 0], [1, 0, 0]])
    scores = model(contexts, mask, targets)
    loss = sigmoid_bce(scores, labels, torch.ones_like(labels))
    loss.backward()

    V, U = model.context.weight.detach().double().numpy(), model.center.weight.detach().double().numpy()
    v_bar = np.stack([V[[1, 2]].mean(0), V[[3, 4, 5, 6]].mean(0)])  # padding slots left out of the mean
    s = np.einsum("be,ble->bl", v_bar, U[targets.numpy()])
    y = labels.numpy()
    sig = 1 / (1 + np.exp(-s))
    hand_loss = np.mean(np.mean(-(y * np.log(sig) + (1 - y) * np.log(1 - sig)), 1))
    ds = (sig - y) / (3 * 2)  # d loss / d score: (B, 1 + K), mean over 3 slots and 2 examples
    dV, dU = np.zeros_like(V), np.zeros_like(U)
    for b, (ctx, n) in enumerate([([1, 2], 2), ([3, 4, 5, 6], 4)]):
        dv_bar = ds[b] @ U[targets[b].numpy()]  # (E,)
        for o in ctx:
            dV[o] += dv_bar / n
        for slot, t in enumerate(targets[b].tolist()):
            dU[t] += ds[b, slot] * v_bar[b]
    assert np.allclose(scores.detach().numpy(), s, atol=1e-6)
    assert loss.item() == pytest.approx(hand_loss, abs=1e-6)
    assert np.allclose(model.context.weight.grad.numpy(), dV, atol=1e-6)
    assert np.allclose(model.center.weight.grad.numpy(), dU, atol=1e-6)


def test_cbow_examples_are_the_skipgram_draw_read_the_other_way():
    from practicum.data.text import cbow_examples, skipgram_examples

    rng = np.random.default_rng(0)
    sentences = [rng.integers(1, 20, size=rng.integers(2, 9)) for _ in range(50)]
    counts = np.bincount(np.concatenate(sentences), minlength=20).astype(float)
    sg = skipgram_examples(sentences, 3, 2, counts ** 0.75, np.random.default_rng(1))
    cb = cbow_examples(sg, 3, 2)
    assert cb["contexts"].shape == cb["context_mask"].shape == (len(sg["centers"]), 6)
    assert cb["targets"].shape == cb["labels"].shape == (len(sg["centers"]), 3)
    assert np.array_equal(cb["targets"][:, 0], sg["centers"])  # the center is the word to predict
    assert np.array_equal(cb["contexts"], sg["contexts_negatives"][:, :6])
    assert (cb["context_mask"].sum(1) >= 1).all()
    assert (sg["mask"][:, 6:8] == 1).all()  # the first K noise slots are always real ones
    assert np.array_equal(cb["targets"][:, 1:], sg["contexts_negatives"][:, 6:8])
    assert (cb["labels"][:, 0] == 1).all() and (cb["labels"][:, 1:] == 0).all()


def test_cbow_entry_quick_says_when_there_is_no_skipgram_run_then_sits_beside_it(cli, home):
    code, _, err = cli("run", "w2v-ptb-cbow", "--quick", "--no-report", "--no-deps")  # without skip-gram's
    assert code == 0, err
    run_dir = latest_run(cli, "w2v-ptb-cbow")
    meets_quick_band(run_dir, "w2v-ptb-cbow")
    alone = table(run_dir, "3_beside")
    assert "no finished run of 'w2v-ptb'" in alone["caption"] and "practicum run w2v-ptb" in alone["caption"]
    assert cli("run", "w2v-ptb", "--quick", "--no-report")[0] == 0
    code, _, err = cli("run", "w2v-ptb-cbow", "--quick", "--no-report", "--force")
    assert code == 0, err
    run_dir = latest_run(cli, "w2v-ptb-cbow")
    skipgram = latest_run(cli, "w2v-ptb")
    beside = table(run_dir, "3_beside")
    assert beside["columns"] == ["query", "CBOW (this run)", f"w2v-ptb {skipgram.name}"]
    assert [r[0] for r in beside["rows"]][:3] == ["chip", "intel", "baby"]
    chip = beside["rows"][0]
    assert len(chip[1].split(", ")) == 5 and len(chip[2].split(", ")) == 5
    scores = {r[0]: r[1:] for r in table(run_dir, "4_beside_scores")["rows"]}
    assert all(isinstance(v, float) and v > 0 for v in scores[next(iter(scores))])  # both losses
    assert json.loads((run_dir / "beside_source.json").read_text())["resolved_id"] == skipgram.name
    assert np.load(run_dir / "embeddings.npy").shape[1] == 100


# ---------------------------------------------------------------------------------------------
# GloVe


def dense_cooccurrence(sentences, V: int, window: int, weighting: bool) -> np.ndarray:
    """The definition, one pair at a time."""
    X = np.zeros((V, V))
    for s in sentences:
        for a in range(len(s)):
            for b in range(len(s)):
                d = abs(a - b)
                if 0 < d <= window:
                    X[s[a], s[b]] += 1.0 / d if weighting else 1.0
    return X


def test_cooccurrence_counts_of_a_hand_made_corpus():
    from practicum.data.text import cooccurrence

    sentences = [np.array([1, 2, 3]), np.array([2, 1])]  # "a b c" and "b a": no pair across the two
    i, j, x = cooccurrence(sentences, 4, 2)
    got = {(int(a), int(b)): float(v) for a, b, v in zip(i, j, x)}
    assert got == {(1, 2): 2.0, (2, 1): 2.0, (2, 3): 1.0, (3, 2): 1.0, (1, 3): 0.5, (3, 1): 0.5}
    i, j, x = cooccurrence(sentences, 4, 2, distance_weighting=False)
    assert {(int(a), int(b)): float(v) for a, b, v in zip(i, j, x)}[(1, 3)] == 1.0
    assert (3, 1) not in {(int(a), int(b)) for a, b in zip(*cooccurrence(sentences, 4, 1)[:2])}

    rng = np.random.default_rng(0)
    corpus = [rng.integers(0, 9, size=rng.integers(1, 12)) for _ in range(40)]
    for window, weighting in ((3, True), (5, False)):
        i, j, x = cooccurrence(corpus, 9, window, weighting)
        X = np.zeros((9, 9))
        X[i.numpy(), j.numpy()] = x.numpy()
        assert np.allclose(X, dense_cooccurrence(corpus, 9, window, weighting), atol=1e-5)
        assert (x > 0).all() and len(x) == (X > 0).sum()


def test_weighting_function_h():
    from practicum.models.glove import weighting

    x = torch.tensor([1.0, 10.0, 50.0, 99.0, 100.0, 1000.0])
    hand = [0.01 ** 0.75, 0.1 ** 0.75, 0.5 ** 0.75, 0.99 ** 0.75, 1.0, 1.0]
    assert torch.allclose(weighting(x), torch.tensor(hand))
    assert torch.allclose(weighting(torch.tensor([2.0, 4.0]), x_max=4.0, alpha=1.0), torch.tensor([0.5, 1.0]))


def test_glove_loss_and_its_gradients_match_a_hand_computation():
    from practicum.models.glove import GloVe, glove_loss

    torch.manual_seed(0)
    model = GloVe(5, 3)
    i, j = torch.tensor([0, 1, 4, 0]), torch.tensor([1, 0, 2, 3])
    x = torch.tensor([3.0, 3.0, 0.5, 250.0])
    pred = model(i, j)
    loss = glove_loss(pred, x)
    loss.backward()

    v, u = model.center.weight.detach().double().numpy(), model.context.weight.detach().double().numpy()
    b, c = (t.weight.detach().double().numpy()[:, 0] for t in (model.center_bias, model.context_bias))
    I, J, X = i.numpy(), j.numpy(), x.double().numpy()
    hand_pred = (v[I] * u[J]).sum(1) + b[I] + c[J]
    h = np.minimum(1.0, (X / 100) ** 0.75)
    err = hand_pred - np.log(X)
    assert np.allclose(pred.detach().numpy(), hand_pred, atol=1e-6)
    assert loss.item() == pytest.approx(np.mean(h * err ** 2), rel=1e-5)
    db = np.zeros(5)
    np.add.at(db, I, 2 * h * err / 4)
    dv = np.zeros_like(v)
    np.add.at(dv, I, (2 * h * err / 4)[:, None] * u[J])
    assert np.allclose(model.center_bias.weight.grad[:, 0].numpy(), db, atol=1e-6)
    assert np.allclose(model.center.weight.grad.numpy(), dv, atol=1e-6)
    assert torch.equal(model.words, model.center.weight + model.context.weight)


def test_glove_entry_quick_beside_skipgram(cli, home):
    assert cli("run", "w2v-ptb", "--quick", "--no-report")[0] == 0
    code, _, err = cli("run", "glove-ptb", "--quick")
    assert code == 0, err
    run_dir = latest_run(cli, "glove-ptb")
    summary = meets_quick_band(run_dir, "glove-ptb")
    assert summary["data/nonzeros"] > 1000 and summary["train/loss"] > 0
    skipgram = latest_run(cli, "w2v-ptb")
    beside = table(run_dir, "3_beside")
    assert beside["columns"] == ["query", "GloVe (this run)", f"w2v-ptb {skipgram.name}"]
    assert beside["rows"][0][0] == "chip" and len(beside["rows"][0][1].split(", ")) == 5
    top = table(run_dir, "4_cooccurrence")["rows"]
    assert top[0][2] >= top[1][2] >= top[7][2] and top[0][3] == 1.0  # the largest count is capped at h = 1
    stats = json.loads((run_dir / "cooccurrence.json").read_text())
    assert sum(stats["counts"]) == stats["nonzeros"] == summary["data/nonzeros"]
    assert (run_dir / "figures" / "weighting.png").is_file() and (run_dir / "report.md").is_file()
    W = np.load(run_dir / "embeddings.npy")
    assert W.shape == (int(summary["data/vocab_size"]), 100)


def practicum_process(*args, env, timeout=300):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "practicum", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def metric_lines(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def kill_when(args: list[str], home: Path, path_glob: str, ready) -> dict:
    """Start ``practicum *args`` in a child and SIGKILL it once its checkpoint satisfies ``ready``."""
    import signal
    import subprocess
    import sys
    import time

    def state():
        found = list(home.glob(path_glob))
        try:
            return torch.load(found[0], weights_only=True)["loop"] if found else None
        except Exception:  # noqa: BLE001 - written atomically, but the directory may be mid-listing
            return None

    child = subprocess.Popen([sys.executable, "-m", "practicum", *args], env=one_thread_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        ck = state()
        if ck and ready(ck):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    ck = state()
    assert ck is not None and ready(ck) and not ck["done"], f"the kill must land mid-epoch: {ck}"
    return ck


# 1,000 sentences, batches of 64 entries of X, 3 epochs, a checkpoint every 40 steps.
GLOVE = ["run", "glove-ptb", "--quick", "--no-report", "-o", "data.limit=1000", "-o", "optim.batch_size=64",
         "-o", "train.epochs=3", "-o", "train.checkpoint_steps=40", "-o", "train.log_steps=25",
         "-o", "eval.beside=''"]


def test_glove_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*GLOVE)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    kill_when(GLOVE, home, "glove-ptb/*/checkpoints/last.pt", lambda ck: ck["epoch"] == 1 and ck["position"] > 0)
    env = one_thread_env()
    out = practicum_process(*GLOVE, env=env)
    assert out.returncode == 0 and "resuming" in out.stderr, out.stderr
    (run_dir,) = (p for p in home.glob("glove-ptb/*/") if p.is_dir())
    (ref_dir,) = (p for p in (tmp_path / "ref").glob("glove-ptb/*/") if p.is_dir())
    assert metric_lines(ref_dir) == metric_lines(run_dir)
    a, b = (np.load(d / "embeddings.npy") for d in (ref_dir, run_dir))
    assert np.array_equal(a, b)
    assert table(ref_dir, "1_neighbours") == table(run_dir, "1_neighbours")


def test_glove_on_two_processes_writes_one_run_in_the_one_process_band(cli, home, tmp_path, monkeypatch):
    args = ["run", "glove-ptb", "--quick", "--no-report", "-o", "eval.beside=''"]
    out = practicum_process(*args, "--nproc", "2", env=one_thread_env())
    assert out.returncode == 0, out.stderr
    assert "on 2 processes" in out.stderr
    (record,) = json.loads(cli("runs", "--json")[1])
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    (run_dir,) = home.glob("glove-ptb/*/")
    assert (run_dir / "embeddings.npy").is_file() and (run_dir / "tables" / "4_cooccurrence.json").is_file()
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli(*args)[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    two, one = record["summary"], one["summary"]
    assert two["train/steps"] == one["train/steps"] and two["data/nonzeros"] == one["data/nonzeros"]
    assert abs(two["train/loss"] - one["train/loss"]) < 0.1 * one["train/loss"]


# ---------------------------------------------------------------------------------------------
# AutoAugment, RandAugment, AugMix: each operation on a known tensor and against PIL


def pil(x: torch.Tensor):
    """(C, H, W) in [0, 1] (multiples of 1/255) -> a PIL image."""
    from PIL import Image

    a = (x * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def from_pil(img) -> torch.Tensor:
    a = torch.from_numpy(np.array(img)).float() / 255
    return a[None] if a.ndim == 2 else a.permute(2, 0, 1)


def random_images(B=4, C=3, H=9, W=11, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, C, H, W), generator=g).float() / 255


def test_geometric_operations_on_known_tensors():
    from practicum.data import autoaugment as A

    x = torch.arange(1.0, 17).view(1, 1, 4, 4) / 16  # rows 1..4, 5..8, ...
    right = A.translate_x(x, torch.tensor([1.0]))
    assert torch.equal(right[0, 0, :, 1:], x[0, 0, :, :3]) and (right[0, 0, :, 0] == 0).all()
    down = A.translate_y(x, torch.tensor([-2.0]), fill=0.5)  # up by two, grey below
    assert torch.equal(down[0, 0, :2], x[0, 0, 2:]) and (down[0, 0, 2:] == 0.5).all()
    assert torch.equal(A.rotate(x, torch.tensor([90.0])), torch.rot90(x, 1, (2, 3)))  # counter-clockwise
    assert torch.equal(A.rotate(x, torch.tensor([-90.0])), torch.rot90(x, -1, (2, 3)))
    assert torch.equal(A.rotate(x, torch.tensor([180.0])), x.flip(2).flip(3))
    # shear 2: PIL's x_in = x_out + 2 y_out from the top-left corner, pixel centres at y + 0.5:
    # row r reads the pixels 2 r + 1 to its right
    sheared = A.shear_x(x, torch.tensor([2.0]))
    for r in range(4):
        k = 2 * r + 1
        expect = torch.cat([x[0, 0, r, k:], torch.zeros(min(k, 4))])[:4]
        assert torch.equal(sheared[0, 0, r], expect), r
    assert torch.equal(A.shear_y(x.transpose(2, 3), torch.tensor([2.0])), sheared.transpose(2, 3))


@pytest.mark.parametrize("op", ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"])
def test_geometric_operations_against_pil(op):
    from PIL import Image

    from practicum.data import autoaugment as A

    x = random_images(3, 3, 12, 12)
    m = {"ShearX": [0.25, -0.1, 0.3], "ShearY": [0.17, -0.3, 0.05], "TranslateX": [3.0, -5.0, 0.0],
         "TranslateY": [-2.0, 4.0, 1.0], "Rotate": [90.0, -90.0, 180.0]}[op]
    ours = A.OPS[op](x, torch.tensor(m))
    for b, mb in enumerate(m):
        affine = {"ShearX": (1, mb, 0, 0, 1, 0), "ShearY": (1, 0, 0, mb, 1, 0), "TranslateX": (1, 0, -mb, 0, 1, 0),
                  "TranslateY": (1, 0, 0, 0, 1, -mb)}
        img = pil(x[b])
        ref = img.rotate(mb, Image.NEAREST) if op == "Rotate" else img.transform(img.size, Image.AFFINE, affine[op],
                                                                                 Image.NEAREST)
        same = (ours[b] - from_pil(ref)).abs() < 1e-6
        assert same.float().mean() > 0.97, (op, mb)  # a tie of the nearest pixel may round the other way


@pytest.mark.parametrize("op", ["AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "Brightness",
                                "Color", "Contrast", "Sharpness"])
def test_pixel_operations_against_pil(op):
    from PIL import ImageEnhance, ImageOps

    from practicum.data import autoaugment as A

    x = random_images(4, 3, 9, 11) * 0.6 + 0.2  # not spanning [0, 1]: autocontrast has work to do
    x = (x * 255).round() / 255
    m = {"Posterize": [1.0, 3.0, 5.0, 8.0], "Solarize": [0.0, 77 / 255, 128 / 255, 1.0]}.get(op, [0.1, 0.5, 1.0, 1.9])
    ours = A.OPS[op](x, torch.tensor(m))
    for b, mb in enumerate(m):
        img = pil(x[b])
        ref = {"AutoContrast": lambda: ImageOps.autocontrast(img), "Equalize": lambda: ImageOps.equalize(img),
               "Invert": lambda: ImageOps.invert(img), "Posterize": lambda: ImageOps.posterize(img, int(mb)),
               "Solarize": lambda: ImageOps.solarize(img, round(mb * 255)),
               "Brightness": lambda: ImageEnhance.Brightness(img).enhance(mb),
               "Color": lambda: ImageEnhance.Color(img).enhance(mb),
               "Contrast": lambda: ImageEnhance.Contrast(img).enhance(mb),
               "Sharpness": lambda: ImageEnhance.Sharpness(img).enhance(mb)}[op]()
        exact = op in ("Equalize", "Invert", "Posterize", "Solarize")
        # PIL rounds to uint8 inside (the grey of Color and Contrast, the smoothed image): 2 levels
        tol = 1e-6 if exact else 2.01 / 255
        assert (ours[b] - from_pil(ref)).abs().max() <= tol, (op, mb)


def test_pixel_operations_on_known_tensors():
    from practicum.data import autoaugment as A

    x = torch.tensor([0.0, 64, 128, 255]).view(1, 1, 1, 4) / 255
    assert torch.equal(A.posterize(x, torch.tensor([1.0])) * 255, torch.tensor([0.0, 0, 128, 128]).view(1, 1, 1, 4))
    assert torch.allclose(A.solarize(x, torch.tensor([0.5])) * 255, torch.tensor([0.0, 64, 127, 0]).view(1, 1, 1, 4))
    assert torch.allclose(A.autocontrast(x[..., 1:3]), torch.tensor([0.0, 1.0]).view(1, 1, 1, 2))
    flat = torch.full((1, 1, 2, 2), 0.3)
    assert torch.equal(A.autocontrast(flat), flat) and torch.equal(A.equalize(flat), A.levels(flat).float() / 255)
    # equalize of 2 x 2 levels {10, 10, 20, 30}: step = (4 - 1) // 255 = 0 -> unchanged
    few = torch.tensor([10.0, 10, 20, 30]).view(1, 1, 2, 2) / 255
    assert torch.equal(A.equalize(few), few)
    # 510 pixels at level 0 and 510 at level 200 (+ one at 255): step = (1021 - 1) // 255 = 4,
    # lut[0] = 2 // 4 = 0, lut[200] = (2 + 510) // 4 = 128, lut[255] = (2 + 1020) // 4 = 255
    half = torch.cat([torch.zeros(510), torch.full((510,), 200.0), torch.tensor([255.0])]).view(1, 1, 1, 1021) / 255
    assert set((A.equalize(half) * 255).round().unique().tolist()) == {0.0, 128.0, 255.0}
    grey = torch.full((1, 3, 2, 2), 0.5)
    assert torch.allclose(A.brightness(grey, torch.tensor([0.5])), torch.full_like(grey, 0.25))
    assert torch.allclose(A.contrast(grey, torch.tensor([1.9])), grey)  # a flat image has no contrast to change
    assert torch.allclose(A.color(grey, torch.tensor([0.0])), grey)
    cut = A.cutout(torch.ones(2, 1, 6, 6), torch.tensor([[2, 2], [0, 5]]), 3, fill=0.0)
    assert cut[0, 0, 1:4, 1:4].sum() == 0 and cut[0].sum() == 36 - 9
    assert cut[1].sum() == 36 - 4  # clipped at the corner: 2 x 2 left


def test_batched_operations_are_per_image_operations():
    from practicum.data import autoaugment as A

    x = random_images(6, 3, 10, 10)
    which = torch.tensor([0, 3, 5, 10, 13, 5])  # Identity, TranslateX, Rotate, Posterize, Equalize, Rotate
    m = torch.tensor([0.0, 2.0, 30.0, 3.0, 0.0, -15.0])
    out = A.apply_ops(x, A.NAMES, which, m)
    for b in range(6):
        assert torch.equal(out[b:b + 1], A.OPS[A.NAMES[which[b]]](x[b:b + 1], m[b:b + 1])), b


def replay_policy(x, gen_state, learned_on="imagenet"):
    """AutoAugment one image at a time, with the draws the batched version makes."""
    from practicum.data import autoaugment as A

    g = torch.Generator()
    g.set_state(gen_state)
    table = A.AUTOAUGMENT[learned_on]
    pick = torch.randint(len(table), (len(x),), generator=g)
    u = torch.rand(len(x), 2, generator=g)
    sign = torch.randint(0, 2, (len(x), 2), generator=g) * 2 - 1
    out = []
    for b in range(len(x)):
        img = x[b:b + 1]
        for step, (op, p, level) in enumerate(table[int(pick[b])]):
            if u[b, step] <= p:
                mag = A.magnitudes(op, torch.tensor([level / 9]), sign[b, step:step + 1].float(), 10, 10)
                img = A.OPS[op](img, mag)
        out.append(img)
    return torch.cat(out)


@pytest.mark.parametrize("learned_on", ["imagenet", "cifar10", "svhn"])
def test_autoaugment_draws_one_sub_policy_per_image(learned_on):
    from practicum.data import autoaugment as A

    x = random_images(16, 3, 10, 10)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    out = A.autoaugment(x, g, learned_on)
    assert torch.allclose(out, replay_policy(x, state, learned_on), atol=1e-6)  # conv2d sums by batch size
    assert len(A.AUTOAUGMENT[learned_on]) == 25 and out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    g.set_state(state)
    assert torch.equal(A.autoaugment(x, g, learned_on), out)  # a function of the generator's state


def test_randaugment_magnitudes_and_draws():
    from practicum.data import autoaugment as A

    f, s = torch.tensor([9 / 30]), torch.tensor([1.0])
    assert A.magnitudes("Posterize", f, s, 32, 32).item() == 7  # torchvision: 8 - round(9 / 7.5)
    assert A.magnitudes("Solarize", f, s, 32, 32).item() == pytest.approx(0.7)  # 255 -> 178.5 of 255
    assert A.magnitudes("TranslateX", f, -s, 32, 32).item() == -4  # int(150 / 331 * 32 * 0.3)
    assert A.magnitudes("Rotate", f, s, 32, 32).item() == pytest.approx(9.0)
    assert A.magnitudes("Color", f, -s, 32, 32).item() == pytest.approx(1 - 0.27)
    x = random_images(8, 1, 10, 10)  # grey images: Color is the identity on them
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out = A.randaugment(x, g, num_ops=2, magnitude=9)
    g2 = torch.Generator()
    g2.set_state(state)
    y = x
    for _ in range(2):
        which = torch.randint(len(A.RANDAUGMENT), (8,), generator=g2)
        sign = torch.randint(0, 2, (8,), generator=g2).float() * 2 - 1
        y = torch.cat([A.OPS[A.RANDAUGMENT[w]](y[b:b + 1], A.magnitudes(A.RANDAUGMENT[w], f, sign[b:b + 1], 10, 10))
                       for b, w in enumerate(which.tolist())])
    assert torch.allclose(out, y, atol=1e-6)  # Sharpness's conv2d may sum in another order for one image


def test_augmix_mixes_chains_with_dirichlet_and_beta_weights():
    from practicum.data import autoaugment as A

    x = random_images(5, 3, 8, 8)
    chains = [x.flip(3), 1 - x, x * 0.5]
    w = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 0, 1]])
    m = torch.tensor([1.0, 1.0, 0.5, 0.0, 0.25])
    out = A.augmix_mix(x, chains, w, m)
    assert torch.allclose(out[0], x[0].flip(2)) and torch.allclose(out[1], 1 - x[1])
    assert torch.allclose(out[2], 0.5 * x[2] + 0.5 * (0.2 * x[2].flip(2) + 0.3 * (1 - x[2]) + 0.25 * x[2]))
    assert torch.equal(out[3], x[3])
    assert torch.allclose(out[4], 0.75 * x[4] + 0.25 * 0.5 * x[4])

    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    a = A.augmix(x, g)
    g.set_state(state)
    assert torch.equal(a, A.augmix(x, g)) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    rng = A.numpy_rng(torch.Generator().manual_seed(1))
    weights = rng.dirichlet([1.0] * 3, size=1000)
    assert np.allclose(weights.sum(1), 1) and abs(weights.mean() - 1 / 3) < 0.02
    assert A.augmix_magnitudes("Posterize", torch.tensor([3.0]), torch.tensor([1.0]), 32, 32).item() == 3
    assert A.augmix_magnitudes("TranslateX", torch.tensor([3.0]), torch.tensor([-1.0]), 32, 32).item() == -3


def test_policy_transform_gives_three_views_for_augmix_with_its_consistency_loss():
    from practicum.data.autoaugment import policy_transform
    from practicum.train.config import Policy

    x = random_images(4, 3, 8, 8)
    assert policy_transform(Policy()) is None
    for name, shape in (("autoaugment", (4, 3, 8, 8)), ("randaugment", (4, 3, 8, 8)), ("augmix", (4, 3, 3, 8, 8))):
        out = policy_transform(Policy(name=name, cutout=2))(x, torch.Generator().manual_seed(0))
        assert out.shape == shape, name
    views = policy_transform(Policy(name="augmix"))(x, torch.Generator().manual_seed(0))
    assert torch.equal(views[:, 0], x) and not torch.equal(views[:, 1], views[:, 2])
    assert policy_transform(Policy(name="augmix", jsd=0))(x, torch.Generator()).shape == x.shape
    assert Policy(name="augmix").views == 3 and Policy(name="augmix", jsd=0).views == 1


# ---------------------------------------------------------------------------------------------
# The Jensen-Shannon consistency


def test_jensen_shannon_consistency_against_a_hand_computation():
    from practicum.train.consistency import js_divergence, sigmoid_js, softmax_js

    p = np.array([[[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]], [[0.1, 0.8, 0.1], [0.4, 0.4, 0.2]],
                  [[0.3, 0.3, 0.4], [0.5, 0.5, 0.0]]])  # (3 views, 2 samples, 3 classes)
    M = p.mean(0)
    kl = lambda a, b: sum(ai * np.log(ai / bi) for ai, bi in zip(a, b) if ai > 0)  # noqa: E731
    hand = np.mean([np.mean([kl(p[v, n], M[n]) for v in range(3)]) for n in range(2)])
    assert js_divergence(torch.tensor(p)).item() == pytest.approx(hand, rel=1e-9)
    same = torch.randn(1, 5, 4).expand(3, 5, 4)
    assert softmax_js(same).item() == pytest.approx(0.0, abs=1e-7)
    assert sigmoid_js(same).item() == pytest.approx(0.0, abs=1e-7)
    logits = torch.randn(3, 5, 4)
    assert softmax_js(logits).item() == pytest.approx(js_divergence(logits.softmax(-1)).item())
    q = torch.sigmoid(logits)  # per label: the Bernoulli (q, 1 - q)
    per_label = js_divergence(torch.stack([q, 1 - q], -1).reshape(3, 20, 2))
    assert sigmoid_js(logits).item() == pytest.approx(per_label.item())
    assert 0 < softmax_js(logits).item() <= np.log(3)  # JS of 3 distributions is at most log 3


def test_consistency_objective_does_one_forward_over_the_three_views():
    from practicum.train.consistency import softmax_js, with_consistency
    from practicum.train.objective import classification

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.rand(4, 3, 1, 3, 4), torch.tensor([0, 1, 2, 1])  # (B, views, C, H, W)
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    s = with_consistency(classification(3), 12.0).step(net, (x, y))
    assert calls == [(12, 1, 3, 4)]
    logits = net(x.transpose(0, 1).flatten(0, 1))
    ce = torch.nn.functional.cross_entropy(logits[:4], y)
    assert s.loss.item() == pytest.approx((ce + 12 * softmax_js(logits.view(3, 4, 3))).item(), rel=1e-6)
    assert s.n == 4 and torch.equal(s.out[0], logits[:4]) and "consistency" in s.sums
    plain = with_consistency(classification(3), 12.0).step(net, (x[:, 0], y))  # evaluation: one view
    assert plain.loss.item() == pytest.approx(ce.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# The policies in the classify practical

SMALL = ["-o", "data.test_limit=128", "-o", "train.tensorboard=false"]


def test_a_policy_at_its_default_is_no_change_of_identity():
    base = load_experiment("fmnist-lenet-bn")
    assert base.config_hash() == load_experiment("fmnist-lenet-bn", ["data.policy.name='none'"]).config_hash()
    assert base.config_hash() != load_experiment("fmnist-lenet-bn", ["data.policy.name='augmix'"]).config_hash()


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment", "augmix"])
def test_classify_trains_with_each_policy(cli, policy):
    code, _, err = cli("run", "fmnist-lenet-bn", "--quick", "-o", f"data.policy.name='{policy}'", *SMALL)
    assert code == 0, err
    run_dir = latest_run(cli, "fmnist-lenet-bn")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    names = {r["name"] for r in rows if r["split"] == "train"}
    assert ("consistency" in names) == (policy == "augmix")
    examples = np.load(run_dir / "augment_examples.npz")
    assert examples["images"].shape == (6, 5, 1, 28, 28) and str(examples["policy"]).startswith(policy)
    assert (run_dir / "figures" / "augment_examples.png").is_file()
    assert "augment_examples.png" in (run_dir / "report.md").read_text()
    meets_quick_band(run_dir, "fmnist-lenet-bn")


# LeNet on 768 images, batch 64: 12 steps per epoch, 2 epochs, a checkpoint every 3 steps.
AUGMIX = ["run", "mnist-lenet", "--quick", "--no-report", "-o", "data.train_limit=768", "-o", "train.epochs=2",
          "-o", "train.checkpoint_steps=3", "-o", "train.log_steps=2", "-o", "data.policy.name='augmix'",
          "-o", "data.shift=2", "-o", "train.tensorboard=false"]


def test_augmix_run_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*AUGMIX)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    kill_when(AUGMIX, home, "mnist-lenet/*/checkpoints/last.pt", lambda ck: ck["step"] >= 3 and ck["position"] > 0)
    out = practicum_process(*AUGMIX, env=one_thread_env())
    assert out.returncode == 0 and "resuming" in out.stderr, out.stderr
    (run_dir,) = (p for p in home.glob("mnist-lenet/*/") if p.is_dir())
    (ref_dir,) = (p for p in (tmp_path / "ref").glob("mnist-lenet/*/") if p.is_dir())
    assert metric_lines(ref_dir) == metric_lines(run_dir)
    a, b = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (ref_dir, run_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment", "augmix"])
def test_multilabel_trains_with_each_policy_beside_its_other_augmentations(cli, policy):
    # voc-lenet flips, crops, jitters, erases and cutmixes: AugMix's three views go through all of it
    code, _, err = cli("run", "voc-lenet", "--quick", "-o", f"augment.policy.name='{policy}'",
                       "-o", "augment.mix_prob=1.0", "-o", "train.tensorboard=false")
    assert code == 0, err
    run_dir = latest_run(cli, "voc-lenet")
    meets_quick_band(run_dir, "voc-lenet")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    consistency = [r["value"] for r in rows if r["name"] == "consistency"]
    assert bool(consistency) == (policy == "augmix") and all(v >= 0 for v in consistency)
    assert np.load(run_dir / "augment_examples.npz")["images"].shape == (6, 5, 3, 32, 32)


def test_augmix_multilabel_batches_carry_three_normalised_erased_mixed_views():
    from practicum.practicals.multilabel import Augment, augment_chain

    chain = augment_chain(Augment(flip=0.5, erase=1.0, cutmix=1.0, policy={"name": "augmix"}), [0.5] * 3, [0.25] * 3)
    x = random_images(4, 3, 16, 16)
    y = torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0]])
    out, targets = chain(x, y, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 3, 16, 16) and targets.shape == (4, 2)
    assert (out < 0).any() and out.min() >= -2 - 1e-6 and out.max() <= 2 + 1e-6  # (x - 0.5) / 0.25
    assert not torch.equal(out[:, 1], out[:, 2])


def test_fmnist_augment_study_quick_gives_mean_and_std_per_policy(cli, home):
    code, _, err = cli("sweep", "study-fmnist-augment", "--quick", "--seeds", "2")
    assert code == 0, err
    study_dir = home / "studies" / "study-fmnist-augment-quick"
    import csv

    with open(study_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["data.shift"], r["data.policy.name"], r["data.policy.jsd"]) for r in rows] == [
        ("0", "none", "12.0"), ("2", "none", "12.0"), ("0", "autoaugment", "12.0"), ("0", "randaugment", "12.0"),
        ("0", "augmix", "12.0"), ("0", "augmix", "0.0")]
    assert all(r["n"] == "2" and " ± " in r["test/accuracy (mean ± std)"] for r in rows)
    assert all(float(r["test/accuracy (mean ± std)"].split(" ± ")[0]) > 0.3 for r in rows)  # chance: 0.1
    runs = json.loads(cli("runs", "--json")[1])
    assert len(runs) == 12 and all(r["status"] == "finished" for r in runs)
