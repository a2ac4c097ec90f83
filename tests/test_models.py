"""Model zoo tests: every registered preset gets the generic checks, then per-family specifics.

Speed: the machine is 2 shared cores, and for models this small one intra-op thread is several
times faster than two (no OpenMP threads spinning on a busy core), so the module runs with one.
Inputs are each preset's natural size except ``resnet18-imagenet`` (64x64 here; one test runs it
at its real 224x224).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from practicum.errors import UsageError
from practicum.models import ACTIVATIONS, MODELS, build_model, count_parameters
from practicum.models.vit import Attention

NAMES = MODELS.names()
TEST_SIZE = {"resnet18-imagenet": 64,  # 224 costs ~1 s a forward pass here
             # D2L's sizes (224, 96) scaled down to what each net still reduces to >= 1x1
             "alexnet": 67, "nin": 67, "googlenet": 32, "densenet": 32, "resnet18-d2l": 32}
# The global pool makes the ResNets size-agnostic; these sizes still reach every stage at >= 1x1.
OVERFIT_SIZE = {"resnet18": 16, "resnet18-slim": 16, "resnet18-imagenet": 32, "resnet18-d2l": 32}
# Presets whose 4096-wide classifier makes one Adam step cost about a second: their overfit
# check runs with `-m slow`; test_narrow_vgg_overfits covers the same code in the fast suite.
SLOW_OVERFIT = {"vgg11", "vgg11-bn", "vgg11-slim", "alexnet", "nin"}
OVERFIT_LR = {name: 1e-3 for name in SLOW_OVERFIT}  # their dropout-0.5 4096-wide fcs diverge at 3e-3
# NiN's logits are ReLU'd class maps (as in D2L): a map that dies stays at 0, so in 150 steps it
# gets to about half its first loss, not a fifth. It must still clearly learn.
OVERFIT_FACTOR = {"nin": 0.6, "nin-slim": 0.6}


def size_of(name: str) -> int:
    return TEST_SIZE.get(name, MODELS[name].image_size)


def make(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    kwargs.setdefault("image_size", size_of(name))
    return build_model(name, **kwargs)


def images(n: int, channels: int, size: int, seed: int = 1) -> torch.Tensor:
    """Smooth random images (bilinear-upsampled 4x4 noise): unlike pixel noise, they stay
    different from each other after a VGG's five max-pools."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, channels, 4, 4, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- generic, one per preset


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape(name):
    model = make(name, num_classes=7, in_channels=3)
    out = model(images(2, 3, size_of(name)))
    assert out.shape == (2, 7)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_grads(name):
    model = make(name)
    F.cross_entropy(model(images(2, 1, size_of(name))), torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, tmp_path):
    model = make(name, seed=0).eval()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = make(name, seed=1)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.eval()
    x = images(2, 1, size_of(name))
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_and_bf16_autocast(name):
    model = make(name).eval()
    x = images(2, 1, size_of(name))
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x.contiguous(memory_format=torch.channels_last))
    assert low.shape == ref.shape
    assert torch.isfinite(low).all()


def overfit(model: nn.Module, size: int, lr: float = 3e-3, max_steps: int = 150) -> tuple[float, float]:
    """Adam on one batch of 8 images, 8 classes, until the loss is below a fifth of its start."""
    x, y = images(8, 1, size), torch.arange(8)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(max_steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
        if loss.item() < 0.2 * first:
            break
    return first, loss.item()


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_OVERFIT else n for n in NAMES]
)
def test_overfits_one_batch(name):
    # The sigmoid nets need the most steps (~100): the vanishing gradients seed 002 reports.
    size = OVERFIT_SIZE.get(name, size_of(name))
    first, last = overfit(make(name, image_size=size), size, lr=OVERFIT_LR.get(name, 3e-3))
    assert last < OVERFIT_FACTOR.get(name, 0.2) * first, f"{name}: loss {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("batch_norm", [False, True])
def test_narrow_vgg_overfits(batch_norm):
    # VGG-11's blocks and init at a width the fast suite can afford (the presets: -m slow).
    model = make("vgg11", width_div=8, hidden=256, dropout=0.0, batch_norm=batch_norm)
    first, last = overfit(model, 28, lr=1e-3)
    assert last < 0.2 * first


# ---------------------------------------------------------------- registry and options


def test_unknown_preset_names_the_nearest():
    with pytest.raises(UsageError, match="did you mean 'resnet18'"):
        build_model("resnet-18")


def test_unknown_option_names_the_nearest():
    with pytest.raises(UsageError, match="no option 'hiden'.*did you mean 'hidden'"):
        build_model("mlp", hiden=[10])


def test_unknown_activation_names_the_nearest():
    with pytest.raises(UsageError, match="did you mean 'gelu'"):
        build_model("mlp", activation="gelu2")


@pytest.mark.parametrize(
    "name, kwargs",
    [("lenet5", dict(image_size=16)), ("cnn2", dict(image_size=8)), ("vit", dict(image_size=30))],
)
def test_impossible_sizes_are_usage_errors(name, kwargs):
    with pytest.raises(UsageError, match="image_size"):
        build_model(name, **kwargs)


def test_presets_know_their_input_size():
    assert MODELS["lenet5"].image_size == 32
    assert MODELS["resnet18-imagenet"].image_size == 224
    assert MODELS["cnn2"].image_size == 28
    assert build_model("lenet5")(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["mlp", "cnn2", "lenet5", "vgg11-slim", "resnet18-slim", "vit"])
def test_activation_option_reaches_every_layer(name):
    activations = {cls for _, cls in ACTIVATIONS.items()}
    default = {type(m) for m in make(name).modules()} & activations  # ReLU, or GELU for the ViT
    model = make(name, activation="tanh")
    kinds = {type(m) for m in model.modules()}
    assert nn.Tanh in kinds and not (default - {nn.Tanh}) & kinds


def test_count_parameters_trainable_only():
    model = build_model("mlp")
    model.hidden.requires_grad_(False)
    assert count_parameters(model) == 203_530
    assert count_parameters(model, trainable_only=True) == 256 * 10 + 10


# ---------------------------------------------------------------- the seeds' architectures


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("softmax", {}, 784 * 10 + 10),
        ("mlp", {}, 203_530),  # 784*256+256 + 256*10+10
        ("mlp2", {}, 235_146),  # 784*256+256 + 256*128+128 + 128*10+10
        ("cnn2", {}, 225_034),  # 320 + 18,496 + 1600*128+128 + 1,290
        ("cnn2-deep", {}, 241_546),  # + conv 64->128; fc 1152->128
        ("lenet5", {}, 61_706),  # 156 + 2,416 + 48,120 + 10,164 + 850
        ("lenet5-28", {}, 61_706),
        ("lenet-d2l", {}, 61_706),  # D2L's LeNet: the same count
        ("vit", {}, 208_522),  # patches 6,400 + cls 128 + pos 17*128 + block 198,272 + LN 256 + head 1,290
        ("resnet18-slim", {}, 701_178),
        ("vgg11-slim", {}, 17_927_498),  # mostly the 4096x4096 fc, as in D2L
        # the CIFAR-style ResNet-18 (3x3 stem, no max-pool), 3 channels, 10 classes
        ("resnet18", dict(in_channels=3), 11_173_962),
        # torchvision's resnet18, plus the 64 biases of seed 004's 7x7 stem conv
        ("resnet18-imagenet", dict(in_channels=3, num_classes=1000), 11_689_512 + 64),
        # D2L's modern CNNs on Fashion-MNIST (1 channel, 10 classes), at D2L's input sizes
        ("alexnet", {}, 46_764_746),
        ("nin", {}, 1_992_166),
        ("googlenet", {}, 5_977_530),
        ("densenet", {}, 758_226),
        ("resnet18-d2l", {}, 11_175_434),  # resnet18-imagenet's layers, 1 channel, 10 classes
        ("lenet-bn", {}, 61_706 + 2 * (6 + 16 + 120 + 84)),  # + BN scale and shift per channel
        ("alexnet-slim", {}, 1_555_514),
        ("nin-slim", {}, 131_110),
        ("googlenet-slim", {}, 376_838),
        ("densenet-slim", {}, 191_566),
        # torchvision's vgg11 at 224x224 exactly
        ("vgg11", dict(in_channels=3, num_classes=1000, image_size=224), 132_863_336),
        # torchvision's vgg11_bn less its 8 conv biases (2,752), which BN makes redundant
        ("vgg11-bn", dict(in_channels=3, num_classes=1000, image_size=224), 132_868_840 - 2_752),
    ],
)
def test_parameter_counts(name, kwargs, expected):
    with torch.device("meta"):  # count without allocating 130M floats
        model = build_model(name, **kwargs)
    assert count_parameters(model) == expected


def test_cnn2_is_seed_002s_network():
    model = build_model("cnn2")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size) for c in convs]
    assert shapes == [(1, 32, (3, 3)), (32, 64, (3, 3))]
    assert (model.fc1.in_features, model.fc1.out_features) == (1600, 128)  # 64 * 5 * 5
    assert model.features(torch.zeros(1, 1, 28, 28)).shape == (1, 64, 5, 5)
    assert any(isinstance(m, nn.Sigmoid) for m in build_model("cnn2-sigmoid").modules())
    assert build_model("cnn2-deep").fc1.in_features == 128 * 3 * 3  # 28 -> 14 -> 7 -> 3


def layer_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    shapes = {}
    for n in names:
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
    model(x)
    return shapes


@pytest.mark.parametrize("name, size", [("lenet5", 32), ("lenet5-28", 28), ("lenet-d2l", 28)])
def test_lenet5_layer_shapes(name, size):
    model = build_model(name)
    names = ["conv1", "pool1", "conv2", "pool2", "conv3", "fc1", "fc2"]
    shapes = layer_shapes(model, torch.zeros(2, 1, size, size), names)
    assert shapes == {
        "conv1": (2, 6, 28, 28),
        "pool1": (2, 6, 14, 14),
        "conv2": (2, 16, 10, 10),
        "pool2": (2, 16, 5, 5),
        "conv3": (2, 120, 1, 1),
        "fc1": (2, 84),
        "fc2": (2, 10),
    }
    pools = (type(model.pool1), type(model.pool2))
    if name == "lenet-d2l":
        assert pools == (nn.AvgPool2d, nn.AvgPool2d) and isinstance(model.act1, nn.Sigmoid)
    else:  # seed 004: max-pool then average-pool, ReLU
        assert pools == (nn.MaxPool2d, nn.AvgPool2d) and isinstance(model.act1, nn.ReLU)


def test_vgg_works_at_224():
    model = make("vgg11-slim", image_size=224, width_div=8, hidden=64).eval()
    assert model.classifier[1].in_features == 64 * 7 * 7  # 224 / 2**5 = 7, as in D2L
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 224, 224)).shape == (1, 10)
    assert make("vgg11-slim", hidden=64).classifier[1].in_features == 128 * 1 * 1  # 28 -> ... -> 1


def test_resnet18_imagenet_at_224():
    model = make("resnet18-imagenet", image_size=224).eval()
    stem = model.stem[0]
    assert (stem.kernel_size, stem.stride) == ((7, 7), (2, 2)) and isinstance(model.stem[3], nn.MaxPool2d)
    with torch.no_grad():
        assert model.stem(torch.zeros(1, 1, 224, 224)).shape == (1, 64, 56, 56)


def test_resnet_shortcuts_project_only_when_shapes_change():
    model = build_model("resnet18")
    small = model.stem[0]
    assert (small.kernel_size, small.stride) == ((3, 3), (1, 1)) and len(model.stem) == 3  # no max-pool
    projected = [not isinstance(b.shortcut, nn.Identity) for stage in model.stages for b in stage]
    assert projected == [False, False, True, False, True, False, True, False]


def test_vit_attention_matches_torch_sdpa():
    torch.manual_seed(0)
    x = torch.randn(2, 17, 128)
    for scale in (True, False):
        attn = Attention(128, heads=8, dropout=0.0, scale=scale)
        q, k, v = (t.reshape(2, 17, 8, 16).transpose(1, 2) for t in attn.qkv(x).split(128, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, scale=16**-0.5 if scale else 1.0)
        expected = attn.proj(y.transpose(1, 2).reshape(2, 17, 128))
        torch.testing.assert_close(attn(x), expected)


def test_vit_scale_switch_changes_the_output_for_the_same_weights():
    scaled = make("vit").eval()
    unscaled = make("vit-noscale", seed=1).eval()
    unscaled.load_state_dict(scaled.state_dict())  # same parameters, only the switch differs
    x = images(2, 1, 28)
    with torch.no_grad():
        assert not torch.allclose(scaled(x), unscaled(x))
    assert scaled.pos_embed.shape == (1, 1 + 16, 128)  # class token + (28/7)^2 patches


def test_lenet_c5_as_a_matrix_product_equals_the_conv():
    """C5 over the classic 5x5 map is computed as Linear(400, 120) with the conv's own weights."""
    c5 = build_model("lenet5").conv3
    h = torch.randn(8, 16, 5, 5)
    assert torch.allclose(c5(h), F.conv2d(h, c5.weight, c5.bias), atol=1e-5)
    h = torch.randn(2, 16, 9, 9)  # a larger input: a real convolution
    assert torch.equal(c5(h), F.conv2d(h, c5.weight, c5.bias)) and c5(h).shape == (2, 120, 5, 5)


def test_adam_and_sgd_use_torchs_fused_kernels_on_cpu():
    from practicum.train.optim import build_optimizer

    model = build_model("lenet5")
    assert build_optimizer("adam", model.parameters(), 1e-3).defaults["fused"] is True
    groups = [{"params": iter([model.fc2.weight])}, {"params": [model.fc2.bias], "lr": 0.1}]
    opt = build_optimizer("sgd", groups, 0.01, momentum=0.9)
    assert opt.defaults["fused"] is True and [len(g["params"]) for g in opt.param_groups] == [1, 1]
