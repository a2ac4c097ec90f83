"""Style transfer (Gram matrix, total variation, the random feature net) and the GANs (Frechet distance,
shapes, fixed-noise reproducibility), each catalog entry end to end on its --quick slice."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from practicum.models.stylenet import RandomVGG, gram



def _last_run(cli):
    rec = json.loads(cli("runs", "--json")[1])[-1]
    return rec, Path(rec["dir"])


# -- style transfer ------------------------------------------------------------------------------


def test_gram_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)  # 2 channels, 2 pixels
    # X X^T = [[1 + 4, 3 + 8], [3 + 8, 9 + 16]], divided by C * H * W = 4
    torch.testing.assert_close(gram(x), torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4)


def test_gram_against_einsum():
    x = torch.randn(1, 8, 5, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gram(x), torch.einsum("bchw,bdhw->cd", x, x) / (8 * 35))


def test_total_variation_by_hand():
    from practicum.practicals.style import tv_loss

    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    # vertical |2-0|, |4-1| -> mean 2.5; horizontal |1-0|, |4-2| -> mean 1.5; 0.5 * (2.5 + 1.5)
    assert float(tv_loss(x)) == pytest.approx(2.0)


def test_random_net_is_a_function_of_its_seed():
    x = torch.randn(1, 3, 32, 48)
    a, b, c = RandomVGG((8, 16), 2, seed=1), RandomVGG((8, 16), 2, seed=1), RandomVGG((8, 16), 2, seed=2)
    fa, fb, fc = (n(x, ["1_1", "2_2"]) for n in (a, b, c))
    assert torch.equal(fa["2_2"], fb["2_2"]) and not torch.equal(fa["2_2"], fc["2_2"])
    assert fa["1_1"].shape == (1, 8, 32, 48) and fa["2_2"].shape == (1, 16, 16, 24)
    assert not any(p.requires_grad for p in a.parameters())


def test_the_synthesized_image_is_the_one_parameter():
    from practicum.models.stylenet import SynthesizedImage

    start = torch.randn(1, 3, 4, 5)
    image = SynthesizedImage(start)
    assert [p.shape for p in image.parameters()] == [start.shape] and torch.equal(image(), start)
    image().sum().backward()
    assert torch.equal(image.weight.grad, torch.ones_like(start))
    assert start.grad is None  # a copy: the content image stays as it was


def test_generated_styles():
    from practicum.practicals.style import generated_style

    for kind in ("mosaic", "waves"):
        img = generated_style(kind, 40, 60, seed=0)
        assert img.shape == (40, 60, 3) and img.dtype == np.uint8 and img.std() > 20


def test_style_transfer_quick_end_to_end(cli, home):
    code, _, err = cli("run", "style-transfer", "--quick", "--no-report")
    assert code == 0, err
    rec, run_dir = _last_run(cli)
    s = rec["summary"]
    assert s["train/style_loss_drop"] > 0.2  # the style term fell even in the few quick steps
    assert s["train/pixel_change"] > 0
    for name in ("style_transfer.png", "result.png", "progress.gif"):
        assert (run_dir / "figures" / name).stat().st_size > 1000, name
    splits = {json.loads(line)["split"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()}
    assert splits == {"content", "style", "tv", "total"}


# -- GANs ----------------------------------------------------------------------------------------


def test_gaussian_frechet_by_hand():
    from practicum.practicals.gan2d import gaussian_frechet

    I = np.eye(2)
    assert gaussian_frechet(np.zeros(2), I, np.zeros(2), I) == pytest.approx(0, abs=1e-12)
    assert gaussian_frechet(np.zeros(2), I, np.array([3.0, 4.0]), I) == pytest.approx(25)
    # N(0, I) vs N(0, 4 I): tr(I + 4I - 2 * 2I) = 2
    assert gaussian_frechet(np.zeros(2), I, np.zeros(2), 4 * I) == pytest.approx(2)
    # symmetric in its arguments, for non-commuting covariances too
    A, B = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, -0.3], [-0.3, 3.0]])
    forth, back = gaussian_frechet(np.ones(2), A, np.zeros(2), B), gaussian_frechet(np.zeros(2), B, np.ones(2), A)
    assert forth == pytest.approx(back)


def test_linear_generator_gaussian_matches_its_samples():
    from practicum.models.gan import Generator2D
    from practicum.practicals.gan2d import generator_gaussian

    torch.manual_seed(0)
    g = Generator2D()
    mu, cov = generator_gaussian(g)
    with torch.no_grad():
        x = g(torch.randn(200_000, 2)).double().numpy()
    np.testing.assert_allclose(x.mean(0), mu, atol=0.01)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.01)


def test_the_gan_step_trains_d_then_g_each_alone():
    """update_D moves only the discriminator (the fake batch is detached), update_G only the
    generator, through the discriminator as update_D left it (the pair both GANs share)."""
    from practicum.models.gan import Discriminator2D, Generator2D, update_D, update_G

    torch.manual_seed(0)
    g, d = Generator2D(), Discriminator2D()
    opt_g, opt_d = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (g, d))
    loss = torch.nn.BCEWithLogitsLoss()
    x, z = torch.randn(16, 2) + 3, torch.randn(16, 2)
    state = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    g0, d0 = state(g), state(d)
    fake = g(z)
    loss_d = update_D(x, fake, d, loss, opt_d)
    assert all(torch.equal(a, b) for a, b in zip(g0, state(g)))
    assert not all(torch.equal(a, b) for a, b in zip(d0, state(d)))
    d1 = state(d)
    with torch.no_grad():  # the generator's loss against the updated discriminator
        expected = loss(d(fake), torch.ones(16))
    loss_g = update_G(fake, d, loss, opt_g)
    assert torch.equal(loss_g, expected) and not loss_g.requires_grad and not loss_d.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(d1, state(d)))
    assert not all(torch.equal(a, b) for a, b in zip(g0, state(g)))


def test_dcgan_shapes():
    from practicum.models.gan import DCDiscriminator, DCGenerator

    g, d = DCGenerator(16, 8), DCDiscriminator(8)
    x = g(torch.randn(5, 16))
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    assert d(x).shape == (5,)


def test_gan_2d_quick_end_to_end(cli, home):
    code, _, err = cli("run", "gan-2d", "--quick", "--no-report")
    assert code == 0, err
    rec, run_dir = _last_run(cli)
    assert np.isfinite(rec["summary"]["samples/frechet"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {(r["name"], r["split"]) for r in rows} >= {("loss", "generator"), ("loss", "discriminator")}
    for name in ("samples_by_epoch.png", "samples.gif"):
        assert (run_dir / "figures" / name).stat().st_size > 1000
    with np.load(run_dir / "samples.npz") as z:
        assert z["snapshots"].shape == (4, 100, 2)  # start + 3 quick epochs, the fixed 100 points


def test_dcgan_quick_samples_are_reproducible(cli, home):
    from PIL import Image

    from practicum.models.gan import DCGenerator
    from practicum.practicals.dcgan import sample

    code, _, err = cli("run", "dcgan-mnist", "--quick", "--no-report")
    assert code == 0, err
    rec, run_dir = _last_run(cli)
    figures = run_dir / "figures"
    grids = sorted(p.name for p in figures.glob("samples_epoch_*.png"))
    assert grids == ["samples_epoch_01.png", "samples_epoch_02.png"]
    with Image.open(figures / "samples.gif") as gif:
        assert gif.n_frames >= 3
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows if r["name"] == "loss"} == {"generator", "discriminator"}
    assert json.loads((run_dir / "tables" / "judge.json").read_text())["rows"][0][0] == "generated"

    # the saved weights and the saved fixed noise give back exactly the recorded final samples
    with np.load(run_dir / "samples.npz") as z:
        fixed_z, final = torch.from_numpy(z["fixed_z"]), z["final"]
    g = DCGenerator(latent_dim=fixed_z.shape[1], width=32)
    g.load_state_dict(torch.load(run_dir / "weights.pt", weights_only=True)["generator"])
    assert np.array_equal(sample(g, fixed_z).numpy(), final)

    # and a second run of the same config (same seed) draws the same samples
    assert cli("run", "dcgan-mnist", "--quick", "--no-report", "--force")[0] == 0
    _, again = _last_run(cli)
    with np.load(again / "samples.npz") as z:
        assert np.array_equal(z["final"], final) and np.array_equal(z["fixed_z"], fixed_z.numpy())
