"""A run's identity leaves out settings at their defaults, so a default may not change value
without a new practical ``version`` (else a finished run of the old default would be reported as
the new one's). This test holds every practical's defaults to the snapshot of its version in
tests/schema_defaults.json; new fields may appear freely. After a deliberate change: bump the
practical's ``Config.version`` and run ``python tests/test_identity.py`` to rewrite the snapshot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from practicum.config import flatten
from practicum.tasks import TASKS, task_schema

SNAPSHOT = Path(__file__).with_name("schema_defaults.json")


def defaults(task: str) -> dict:
    schema = task_schema(task)
    cfg = schema.model_validate({"name": "x", "task": task})
    return flatten(cfg.model_dump(mode="json", exclude={"name", "task", "description", "quick", "expect", "reproduces"}))


def snapshot() -> dict:
    return {task: {"version": task_schema(task).version, "defaults": defaults(task)} for task in TASKS}


@pytest.mark.parametrize("task", TASKS)
def test_defaults_are_those_of_the_version(task):
    recorded = json.loads(SNAPSHOT.read_text())[task]
    version = task_schema(task).version
    assert version == recorded["version"], f"{task}: version {version}; rewrite the snapshot (see the docstring)"
    now = defaults(task)
    changed = {k: (v, now.get(k, "<removed>")) for k, v in recorded["defaults"].items() if now.get(k, "<removed>") != v}
    assert not changed, f"{task}: defaults changed without a new version: {changed}"


def test_identity_ignores_defaults_and_sees_the_version():
    from practicum.config import load_experiment

    cfg = load_experiment("mnist-lenet")
    same = load_experiment("mnist-lenet", ["train.eval_batch_size=1000"])  # the default, said aloud
    assert cfg.config_hash() == same.config_hash()
    assert cfg.config_hash() != load_experiment("mnist-lenet", ["train.eval_batch_size=500"]).config_hash()
    assert cfg.identity()["(version)"] == type(cfg).version
    assert "(resolved)" in cfg.identity()["model"]


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
