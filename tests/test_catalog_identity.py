"""Every run identity of the catalog, pinned: each entry in its full and quick form, and every
run that each reproduction plans (entries at every seed, every study's trials). A refactor that
moves code must leave them all unchanged (the store reuses a finished run by identity, so a
changed hash silently reruns it); an intended change bumps the practical's version and re-records
with ``PRACTICUM_RECORD_IDENTITIES=1 pytest tests/test_catalog_identity.py``."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from practicum.config import catalog, load_experiment
from practicum.store import Index

PINS = Path(__file__).with_name("catalog_identities.json")


def identities(home: Path) -> dict[str, str]:
    from practicum import reproduce, sweeps

    out = {}
    for name, path in sorted(catalog().items()):
        for quick in (False, True):
            form = f"{name}{' --quick' if quick else ''}"
            if "grid" in tomllib.loads(path.read_text(encoding="utf-8")):  # a study: each trial
                for t in sweeps.plan_study(name, quick=quick).trials:
                    out[f"{form}: seed {t.seed} {' '.join(t.overrides)}".strip()] = t.config_hash
            else:
                out[form] = load_experiment(name, quick=quick).config_hash()
    index = Index(home)
    for seed in ("000", "002", "003", "004"):
        for quick in (False, True):
            for job in reproduce.plan(seed, quick=quick, index=index).jobs:
                out[f"reproduce {seed}{' --quick' if quick else ''}: {job.experiment} seed {job.seed} "
                    f"{' '.join(job.overrides)}".strip()] = job.config_hash
    return out


@pytest.mark.timeout(300)
def test_every_catalog_identity_is_unchanged(tmp_path):
    got = identities(tmp_path / "runs")
    if os.environ.get("PRACTICUM_RECORD_IDENTITIES"):
        PINS.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {len(got)} identities in {PINS.name}")
    want = json.loads(PINS.read_text())
    assert len(want) > 400
    changed = [f"{k}: {want.get(k)} -> {got.get(k)}" for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
    assert changed == []
