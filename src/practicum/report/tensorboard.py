"""Export recorded runs to TensorBoard: their scalars and an HParams entry with the real final
metrics, so a sweep's trials can be compared in TensorBoard's HParams view."""

from __future__ import annotations

from pathlib import Path

from practicum.store import RunRecord, read_metrics


def export_run(record: RunRecord, hparams: dict, log_dir: Path) -> Path:
    """Write ``record``'s metrics and hparams under ``log_dir / record.id`` (once)."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(log_dir) / record.id
    marker = out / ".exported"
    if marker.exists():
        return out
    writer = SummaryWriter(str(out))
    for r in read_metrics(Path(record.dir)):
        writer.add_scalar(f"{r['name']}/{r['split']}", r["value"], r["step"], walltime=r["time"])
    clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
    metrics = {f"hparam/{k}": float(v) for k, v in record.summary.items()}
    writer.add_hparams(clean, metrics, run_name=".")
    writer.close()
    marker.touch()
    return out
