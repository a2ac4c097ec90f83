"""GPU-ready by construction (issue 28): the GPU paths, guarded on a machine without a GPU.

torch's CUDA functions are faked where a path only asks them (device count, capability, RNG
state); a batch is built on the ``meta`` device under a mode that fails any op mixing devices;
the fit loop's steps are counted for tensor reads (each one a GPU -> CPU sync on a GPU). What
needs a real GPU is in bench/gpu_smoke.sh."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from practicum.errors import UsageError

# -- fused optimizers: torch's own list of devices -------------------------------------------------


def test_the_fused_rule_is_torchs_list_of_devices_and_kernels(monkeypatch):
    from torch.utils import _foreach_utils

    from practicum.train import optim

    torch_list = _foreach_utils._get_fused_kernels_supported_devices()
    params = [nn.Parameter(torch.zeros(3))]
    for name in ("sgd", "adam", "adamw", "adagrad"):  # on the CPU: fused, as before
        assert optim.build_optimizer(name, params, lr=0.1).defaults["fused"] is True, name
    # Every op has a kernel (a CUDA or MPS build): the devices are exactly torch's list.
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: True)
    for device in [*torch_list, "meta", "xla", "lazy"]:
        for op in ("sgd", "adam", "adamw", "adagrad"):
            assert optim.fused_kernel(device, op) == (device in torch_list), (device, op)
    # A torch whose list lacks a device: not fused there, whatever the kernels (no hard-coded list).
    monkeypatch.setattr(_foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"])
    assert optim._fusable(params, "adagrad") is None
    assert optim.build_optimizer("adagrad", params, lr=0.1).defaults["fused"] is not True


def test_no_fused_kernel_for_an_op_the_build_does_not_register(monkeypatch):
    from practicum.train import optim

    registered = {("aten::_fused_adam_", "MPS")}  # torch 2.13: fused Adam on mps, no fused Adagrad
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: (op, key) in registered)
    assert optim.fused_kernel("mps", "adam") and not optim.fused_kernel("mps", "adagrad")


# -- the kaggle submission pass ------------------------------------------------------------------------


class OnDevice(nn.Module):
    """A model whose parameters are on ``meta`` and which records where its inputs are."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, device="meta"))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.device.type)
        return torch.zeros(len(x), 10)


def test_the_kaggle_submission_runs_on_the_models_device():
    from practicum.data.tensors import Pipeline
    from practicum.practicals.cifar_kaggle import predict_classes

    model = OnDevice()
    x = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    pred = predict_classes(model, Pipeline(mean=[0.5] * 3, std=[0.25] * 3), x, batch_size=3)
    assert model.seen == ["meta"] * 3 and pred.shape == (7,) and pred.device.type == "cpu"


# -- batches on the data's device -----------------------------------------------------------------------


class OneDevice(TorchFunctionMode):
    """Fails any torch op whose tensors are on more than one device (a CPU 0-d scalar aside),
    but the ops that move a tensor."""

    MOVES = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.copy_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.MOVES:
            devices = {t.device.type for t in tree_flatten((args, kwargs))[0]
                       if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)}
            assert len(devices) <= 1, f"{getattr(func, '__name__', func)} mixes devices {devices}"
        return func(*args, **kwargs)


def test_training_batches_are_built_on_the_datas_device():
    from practicum.data.tensors import Loader, Pipeline, TensorSet

    x = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    data = TensorSet(x, torch.randint(0, 10, (20,)), [str(i) for i in range(10)]).to("meta")
    pipe = Pipeline(image_size=32, mean=[0.13], std=[0.31], shift=2, flip=True, channels_last=True)
    loader = Loader(data, 8, pipe, train=True, generator=torch.Generator().manual_seed(0), device="meta")
    with OneDevice():
        xb, yb = loader.batch(loader.order(), 0)
        ev = Loader(data, 8, Pipeline(image_size=24, mean=[0.13], std=[0.31]), train=False, device="meta")
        xe, _ = next(iter(ev))  # a downsizing resize: antialiased
    assert xb.device.type == yb.device.type == xe.device.type == "meta"
    assert xb.shape == (8, 1, 32, 32) and xe.shape == (8, 1, 24, 24)


def test_augmentations_make_their_tensors_on_the_images_device():
    from practicum.data import augment as A

    x, y = torch.zeros(4, 3, 8, 8, device="meta"), torch.zeros(4, 3, device="meta")
    gen = torch.Generator().manual_seed(0)
    with OneDevice():
        outs = [A.random_shift(x, 2, gen), A.random_flip(x, 0.5, gen), A.random_resized_crop(x, 0.5, (0.5, 1), gen),
                A.random_jitter(x, 0.2, gen), A.random_erase(x, 1.0, gen),
                A.random_mix(x, y, 0.2, 0.0, 1.0, gen)[0], A.random_mix(x, y, 0.0, 1.0, 1.0, gen)[0]]
    assert all(o.device.type == "meta" and o.shape == x.shape for o in outs)


def test_device_aware_batches_are_the_same_on_the_cpu():
    """Moving the uint8 batch to the device before making it ready changes nothing on the CPU."""
    from practicum.data.augment import flip, random_shift
    from practicum.data.tensors import Loader, Pipeline, TensorSet

    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (16, 1, 12, 12), dtype=torch.uint8, generator=g)
    data = TensorSet(x, torch.arange(16) % 10, [str(i) for i in range(10)])
    pipe = Pipeline(image_size=16, mean=[0.5], std=[0.2], shift=2, flip=True)
    loader = Loader(data, 8, pipe, train=True, generator=torch.Generator().manual_seed(0))
    order = loader.order()
    xb, yb = loader.batch(order, 1)
    replay = torch.Generator().manual_seed(0)
    torch.randperm(16, generator=replay)
    shifts = torch.randint(0, 5, (8, 2), generator=replay)
    flips = torch.rand(8, generator=replay) < 0.5
    idx = order[8:16]
    expected = pipe.finish(flip(random_shift(x[idx], 2, shifts=shifts), flips).float().div_(255))
    assert torch.equal(xb, expected) and torch.equal(yb, data.y[idx])


# -- no GPU -> CPU sync per step ------------------------------------------------------------------------


class FakeRun:
    """What fit() asks of a run, in a folder, logging into a list."""

    resumed, scope_start, cfg = False, 0, None

    def __init__(self, folder: Path):
        self.dir, self.lines = folder, []

    tb_dir = property(lambda self: self.dir / "tb")

    def guard(self, look: bool = False) -> None:
        pass

    def log(self, metrics, *, split, step, epoch=None) -> None:
        self.lines.append((split, step, dict(metrics)))

    def metrics_position(self) -> int:
        return len(self.lines)

    def rewind_metrics(self, position: int) -> None:
        del self.lines[position:]

    def checkpoint_path(self, name: str) -> Path:
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        return self.dir / "checkpoints" / name


def tiny_fit(folder: Path, n: int, objective=None, **fit_options):
    """fit() of a linear classifier on n 4x4 images, batches of 4: n / 4 steps in one epoch."""
    from practicum.data.tensors import Loader, Pipeline, TensorSet
    from practicum.train.loop import FitConfig, fit
    from practicum.train.objective import classification
    from practicum.train.optim import build_optimizer, build_schedule

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = TensorSet(torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(n) % 3,
                     ["a", "b", "c"])
    loader = Loader(data, 4, Pipeline(), train=True, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    opt = build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9)
    sched = build_schedule(opt, "cosine", total_steps=loader.steps_per_epoch)
    cfg = FitConfig(**{"epochs": 1, "log_steps": 0, "progress": False, "tensorboard": False, **fit_options})
    run = FakeRun(folder)
    state = fit(model, opt, sched, objective or classification(3), loader, {}, cfg, run)
    return state, run, model


def test_the_fit_loop_reads_no_tensor_per_step(tmp_path, monkeypatch):
    """Each read of a GPU tensor's value (item, float, int, bool, tolist) waits for the GPU; the
    training sums stay tensors until the loop logs, evaluates or checkpoints."""
    reads = {"n": 0}
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            reads["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts = {}
    for n in (16, 48):  # 4 and 12 steps, one log and one checkpoint each (the epoch end)
        reads["n"] = 0
        state, _, _ = tiny_fit(tmp_path / str(n), n)
        counts[n] = reads["n"]
        assert state.step == n // 4 and isinstance(state.last_train["loss"], float)
    assert counts[16] == counts[48], counts


def test_the_sums_are_those_of_a_read_per_step(tmp_path):
    """The window and epoch sums are Python floats, added in step order: the same numbers as
    ``.item()`` at every step gave (checkpoints hold plain values)."""
    state, run, _ = tiny_fit(tmp_path, 24, log_steps=2)
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in state.last_train.values())
    train = [m for split, _, m in run.lines if split == "train"]
    assert len(train) == 3 and all(isinstance(v, float) for m in train for v in m.values())
    ck = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ck["loop"]["window"] == {} and not any(isinstance(v, torch.Tensor) for v in ck["loop"]["epoch_sums"].values())


def nan_from(step_index: int):
    """A classification objective whose loss is NaN from its ``step_index``-th training batch on."""
    from practicum.train.objective import Step, classification

    inner, calls = classification(3), {"n": 0}
    clean = inner.step

    def step(net, batch):
        calls["n"] += 1
        s = clean(net, batch)
        return Step(s.loss * float("nan") if calls["n"] >= step_index else s.loss, s.n, s.out, s.sums)

    inner.step = step
    return inner


@pytest.mark.parametrize("checkpoint_steps", [0, 1, 2])
def test_a_nan_is_still_caught_before_any_checkpoint(tmp_path, checkpoint_steps):
    from practicum.train.loop import Diverged

    with pytest.raises(Diverged, match=r"model diverged at step 5 \(epoch 0\.42\): loss = nan, learning rate"):
        tiny_fit(tmp_path, 48, objective=nan_from(5), checkpoint_steps=checkpoint_steps)
    last = tmp_path / "checkpoints" / "last.pt"
    if checkpoint_steps == 0:
        assert not last.exists()
    else:
        ck = torch.load(last, weights_only=True)
        assert ck["loop"]["step"] == 4 // checkpoint_steps * checkpoint_steps  # the last one before step 5
        assert all(torch.isfinite(v).all() for v in ck["model"].values())


# -- DDP: the backend from the device, a bounded wait, CPU objects -------------------------------------


def fake_gpus(monkeypatch, count: int, current: int = 0) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)


def test_the_ddp_backend_follows_the_device(monkeypatch):
    from practicum.train import ddp

    fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert ddp.backend_for(torch.device("cpu")) == "gloo"  # a CPU model on a GPU host
    assert ddp.backend_for(torch.device("cuda", 1)) == "nccl"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # more processes than GPUs: nccl would refuse
    assert ddp.backend_for(torch.device("cuda", 0)) == "gloo"
    with pytest.raises(UsageError, match="train.device = 'mps'.*gloo is for cpu, nccl for cuda"):
        ddp.backend_for(torch.device("mps"))


def test_joining_a_process_group_uses_the_configs_device_and_a_timeout(monkeypatch):
    from practicum.train import ddp

    fake_gpus(monkeypatch, 2)
    calls = []
    monkeypatch.setattr(ddp.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(ddp.dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setattr(ddp, "joined", False)
    monkeypatch.delenv("PRACTICUM_RENDEZVOUS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("PRACTICUM_DDP_TIMEOUT", "120")
    ddp.init("cpu")  # -o train.device=cpu --nproc 2 on a two-GPU host
    ((backend, options),) = calls
    assert backend == "gloo" and options["timeout"].total_seconds() == 120


def test_gathered_objects_travel_as_cpu_tensors(monkeypatch):
    from practicum.train import ddp

    class OnGPU(torch.Tensor):  # stands for a CUDA tensor: .cpu() makes a plain one
        def cpu(self, *args, **kwargs):
            return self.as_subclass(torch.Tensor)

    sent = []
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    monkeypatch.setattr(ddp.dist, "all_gather_object", lambda out, obj: (sent.append(obj), out.__setitem__(0, obj)))
    h = torch.zeros(2, 3).as_subclass(OnGPU)
    ddp.all_gather_object({"state": (h, h + 1), "step": 3})
    ((obj,),) = [sent]
    assert obj["step"] == 3 and isinstance(obj["state"], tuple)
    assert all(type(t) is torch.Tensor for t in obj["state"])


def test_a_rank_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch):
    from practicum.train.launch import wait_all

    monkeypatch.setenv("PRACTICUM_KILL_GRACE", "0.5")
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    stuck = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    stuck.stdout.readline()  # its handler is in place
    failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    start = time.monotonic()
    try:
        codes = wait_all([failing, stuck])
    finally:
        stuck.kill()
    assert codes == [3, -9] and time.monotonic() - start < 20


# -- random states: the run's own GPU only ---------------------------------------------------------------


def test_only_the_runs_own_gpu_rng_is_saved_and_old_checkpoints_load(monkeypatch):
    from practicum.train import checkpoint

    fake_gpus(monkeypatch, 2, current=1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.tensor([int(device), 7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state saved"))
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append((state.tolist(), device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("every GPU's state restored"))
    state = checkpoint.rng_state()
    assert [s.tolist() for s in state["cuda"]] == [[1, 7]]
    checkpoint.set_rng_state(state)
    assert restored == [([1, 7], 1)]
    # A checkpoint of before issue 28 holds every visible GPU's state; this process sees fewer.
    old = {**state, "cuda": [torch.tensor([0, 0], dtype=torch.uint8), torch.tensor([1, 1], dtype=torch.uint8)]}
    fake_gpus(monkeypatch, 1, current=0)
    restored.clear()
    checkpoint.set_rng_state(old)
    assert restored == [([0, 0], 0)]


def test_the_mps_generator_is_checkpointed(monkeypatch):
    from practicum.train import checkpoint

    monkeypatch.setattr(checkpoint, "mps_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: torch.tensor([5], dtype=torch.uint8))
    restored = []
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: restored.append(state.tolist()))
    state = checkpoint.rng_state()
    assert state["mps"].tolist() == [5]
    checkpoint.set_rng_state(state)
    assert restored == [[5]]


# -- precision, deterministic mode, what env.json says --------------------------------------------------


def fake_card(monkeypatch, name: str, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_precision_auto_wants_native_bf16(monkeypatch, capsys):
    from practicum.train import device as dev

    gpu = torch.device("cuda", 0)
    fake_card(monkeypatch, "Tesla T4", (7, 5))  # is_bf16_supported() says True: emulation
    assert dev.resolve_precision("auto", gpu) is None
    assert dev.resolve_precision("bf16", gpu) is torch.bfloat16  # honoured, with a warning
    assert "Tesla T4 (compute capability 7.5 < 8.0): bf16 is emulated" in capsys.readouterr().err
    fake_card(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0))
    assert dev.resolve_precision("auto", gpu) is torch.bfloat16
    assert dev.resolve_precision("fp32", gpu) is None


def test_a_cuda_device_is_set_up_deterministic_without_tf32_and_put_back(monkeypatch):
    from practicum.train import device as dev

    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        dev.cuda_setup(torch.device("cuda", 0))
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert dev.resolve_device("cpu").type == "cpu"  # a CPU run next: torch's defaults again
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        dev.cuda_setup(None)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def test_env_json_names_the_card_and_what_keeps_a_resume_from_being_exact(tmp_path, monkeypatch, capsys):
    from practicum.train import loop

    fake_card(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    (tmp_path / "env.json").write_text(json.dumps({"python": "3"}))
    run = FakeRun(tmp_path)
    model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 4, num_layers=2, dropout=0.3))
    loop.record_compute(run, torch.device("cuda", 0), torch.bfloat16, model)
    compute = json.loads((tmp_path / "env.json").read_text())["compute"]
    assert compute["device"] == "cuda:0" and compute["precision"] == "bf16"
    assert compute["gpu"] == "NVIDIA A100-SXM4-40GB (sm 8.0)" and compute["capability"] == "8.0"
    assert compute["cudnn"] == 90100 and "cuda" in compute and compute["tf32"] in (True, False)
    assert compute["not_exact"] == ["cuDNN RNN dropout in 1"]
    assert "not bit-identical" in capsys.readouterr().err
    assert loop.not_exact_on(torch.device("cpu"), model) == []
    assert loop.not_exact_on(torch.device("cuda", 0), nn.LSTM(4, 4, num_layers=2)) == []  # no dropout


def test_the_resume_check_compares_the_card_not_its_index(tmp_path):
    from practicum.execute import resume_differences

    class R:
        dir, lost = tmp_path, False

    def sessions(*computes, cpus=("AMD EPYC", "AMD EPYC")):
        first, *rest = [{"compute": c, "hardware": {"cpu": cpu}} for c, cpu in zip(computes, cpus)]
        (tmp_path / "env.json").write_text(json.dumps({**first, "resumed": rest}))
        return resume_differences(R())

    a100 = {"device": "cuda:0", "gpu": "NVIDIA A100-SXM4-40GB (sm 8.0)", "precision": "fp32"}
    assert sessions(a100, {**a100, "device": "cuda:1"}) == []  # another index of the same card
    t4 = {"device": "cuda:0", "gpu": "Tesla T4 (sm 7.5)", "precision": "fp32"}
    assert sessions(a100, t4) == ["compute.gpu: NVIDIA A100-SXM4-40GB (sm 8.0) -> Tesla T4 (sm 7.5)"]
    assert sessions({"device": "cpu"}, {"device": "cpu"}, cpus=("AMD EPYC", "Intel Xeon")) == [
        "hardware.cpu: AMD EPYC -> Intel Xeon"]
    rnn = {**a100, "not_exact": ["cuDNN RNN dropout in encoder.rnn"]}
    notes = sessions(rnn, rnn)
    assert notes == ["compute.not_exact: cuDNN RNN dropout in encoder.rnn (its random state is in no checkpoint)"]
    assert json.loads((tmp_path / "env.json").read_text())["resume_bit_identical"] is False


# -- sweeps over the GPUs, MPS, the global pool ---------------------------------------------------------


class FinishedProcess:
    def __init__(self, args, env, stdout=None):
        self.env, self.returncode = env, 0

    def poll(self):
        return 0


def test_sweep_workers_spread_over_the_visible_gpus(monkeypatch):
    from practicum import sweeps

    started = []
    monkeypatch.setattr(sweeps.subprocess, "Popen", lambda args, env, stdout: started.append(env) or
                        FinishedProcess(args, env))
    plan = sweeps.Plan("p", "mnist-lenet", {}, [sweeps.Trial({}, seed, []) for seed in range(5)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert sweeps.run_in_processes(plan, plan.trials, 2, log=lambda m: None) == [0] * 5
    assert [e["CUDA_VISIBLE_DEVICES"] for e in started] == ["2", "3", "2", "3", "2"]
    started.clear()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sweeps.run_in_processes(plan, plan.trials[:2], 2, log=lambda m: None)
    assert all("CUDA_VISIBLE_DEVICES" not in e for e in started)  # no GPU: nothing set


def test_the_activation_study_reads_its_gradient_norm_without_float64_on_the_device():
    source = Path(__import__("practicum.practicals.activations", fromlist=["x"]).__file__).read_text()
    assert ".grad.double()" not in source and ".grad.cpu().double()" in source


POOLED = [("resnet18-slim", 28), ("nin-slim", 28), ("googlenet-slim", 28), ("densenet", 32)]


@pytest.mark.parametrize("name, size", POOLED)
def test_the_global_pool_has_a_deterministic_backward(name, size):
    """``AdaptiveAvgPool2d(1)`` is computed as ``x.mean((2, 3))`` by torch itself (ATen's
    adaptive_avg_pool2d for a 1x1 output, on every device but XPU): its backward is MeanBackward,
    an expand, deterministic on CUDA. The non-deterministic AdaptiveAvgPool2DBackward (an error
    in deterministic mode) may not appear in any registered model's graph."""
    from practicum.models import build_model

    torch.manual_seed(0)
    model = build_model(name, num_classes=3, in_channels=1, image_size=size)
    out = model(torch.randn(2, 1, size, size))
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            todo += [f for f, _ in fn.next_functions]
    names = {type(f).__name__ for f in seen}
    assert "MeanBackward1" in names and not any(n.startswith("AdaptiveAvgPool2D") for n in names), names


def test_conv_scratch_has_a_device_key_that_defaults_to_the_cpu():
    from practicum.practicals.conv_scratch import Config

    assert Config.model_validate({"name": "x", "task": "conv_scratch"}).train.device == "cpu"
