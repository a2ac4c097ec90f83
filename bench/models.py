"""Training throughput of each model preset against this machine's matrix-multiply peak.

For every preset an entry trains (seed 000/004's LeNet-5, seed 002's CNN, VGG-11, ResNet-18 at
28x28, seed 004's ResNet-18 at 224x224 with the 7x7 stem, seed 000's ViT) and every compute mode
(fp32, fp32 + channels_last, bf16 autocast, bf16 + channels_last), one training step (forward,
loss, backward, Adam step) at the entry's batch size is timed after warm-up. Its floating-point
operations are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions,
forward and backward), so

    achieved GFLOP/s = counted FLOPs per step / seconds per step
    ratio to peak    = achieved / the GEMM peak of the same dtype, measured in this run
                       (a large square ``torch.mm`` in fp32 and in bf16)

Seconds per epoch are for 60,000 images (the MNIST training set). Run it on an otherwise idle
machine, with the threads a training would use:

    python bench/models.py                       # torch's own thread count
    python bench/models.py --threads 2 --models resnet18 vgg11
    python bench/models.py --steps 3 --warmup 1  # a quicker, noisier reading
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from practicum.models import build_model
from practicum.train.optim import build_optimizer

# name -> (preset, input size, batch size as in the entry, channels)
PRESETS = {
    "lenet5": ("lenet5", 32, 64),          # mnist-lenet, lab-lenet
    "cnn2": ("cnn2", 28, 64),              # mnist-cnn2 (seed 002)
    "vgg11": ("vgg11", 28, 64),            # mnist-vgg11
    "resnet18": ("resnet18", 28, 128),     # mnist-resnet18
    "resnet18-224": ("resnet18-imagenet", 224, 64),  # lab-resnet18 (seed 004)
    "vit": ("vit", 28, 64),                # mnist-vit
}
MODES = {"fp32": (None, False), "fp32+cl": (None, True), "bf16": (torch.bfloat16, False),
         "bf16+cl": (torch.bfloat16, True)}
EPOCH = 60_000


def gemm_peak(dtype: torch.dtype, sizes=(2048, 4096), repeats: int = 5) -> float:
    """GFLOP/s of the fastest large matrix product over sizes and repeats, by both of torch's CPU
    GEMM paths: ``torch.mm`` (BLAS) and a 1x1 convolution in channels_last (oneDNN, the path the
    convolutions take). Either alone can understate the peak: in fp32 oneDNN's convolutions beat
    ``torch.mm``. Measured at the start and the end of the run."""
    best = 0.0

    def timed(fn, flops: float) -> None:
        nonlocal best
        fn()
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = max(best, flops / (time.perf_counter() - t) / 1e9)

    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        timed(lambda: torch.mm(a, b), 2 * n**3)
    for c in (512, 1024):  # a GEMM of (4 * 32 * 32) x c x c through oneDNN
        x = torch.randn(4, c, 32, 32).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 1, 1).to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            timed(lambda: F.conv2d(x, w), 2 * 4 * 32 * 32 * c * c)
    return best


def train_step(model, opt, x, y, dtype) -> None:
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(name: str, mode: str, steps: int, warmup: int) -> dict:
    preset, size, batch = PRESETS[name]
    dtype, channels_last = MODES[mode]
    torch.manual_seed(0)
    model = build_model(preset, num_classes=10, in_channels=1, image_size=size)
    x, y = torch.randn(batch, 1, size, size), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = build_optimizer("adam", model.parameters(), lr=1e-3)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, opt, x, y, dtype)
    flops = counter.get_total_flops()
    for _ in range(warmup):
        train_step(model, opt, x, y, dtype)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        train_step(model, opt, x, y, dtype)
        times.append(time.perf_counter() - t)
    seconds = sorted(times)[len(times) // 2]  # the median step
    return {"images_per_s": batch / seconds, "gflops": flops / seconds / 1e9, "epoch_s": EPOCH / batch * seconds,
            "step_s": seconds, "gflop_per_step": flops / 1e9}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = {"fp32": gemm_peak(torch.float32), "bf16": gemm_peak(torch.bfloat16)}
    print(f"threads {torch.get_num_threads()}; GEMM peak (best of torch.mm 2048^3, 4096^3 and 1x1 convolutions): fp32 {peak['fp32']:.0f} "
          f"GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    print(f"{'model':<14}{'mode':<9}{'GFLOP/step':>11}{'step s':>9}{'img/s':>9}{'s/epoch':>9}"
          f"{'GFLOP/s':>9}{'of peak':>9}{'vs fp32':>9}")
    for name in args.models:
        base = None
        for mode in args.modes:
            r = measure(name, mode, args.steps, args.warmup)
            base = base or r["step_s"]
            ratio = r["gflops"] / peak[mode[:4]]
            print(f"{name:<14}{mode:<9}{r['gflop_per_step']:>11.1f}{r['step_s']:>9.3f}{r['images_per_s']:>9.0f}"
                  f"{r['epoch_s']:>9.0f}{r['gflops']:>9.0f}{ratio:>9.0%}{base / r['step_s']:>8.2f}x", flush=True)
    again = {"fp32": gemm_peak(torch.float32), "bf16": gemm_peak(torch.bfloat16)}
    print(f"GEMM peak again at the end: fp32 {again['fp32']:.0f}, bf16 {again['bf16']:.0f} GFLOP/s (a large gap "
          "between the two readings means the machine was not idle: the ratios are void)")


if __name__ == "__main__":
    main()
