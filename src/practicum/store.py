"""The run store: one directory per run plus a SQLite index of all runs (``practicum.runs()`` is its table).

Layout::

    <home>/index.sqlite                       # WAL mode; one row per run
    <home>/<experiment>/<run id>/config.toml  # fully resolved config (re-runnable as an experiment file)
                                 env.json     # versions, git commit, platform, threads, command line
                                 metrics.jsonl
                                 summary.json # flat map "split/metric" -> value
                                 checkpoints/ figures/ tb/
                                 .lock        # flock held while the run's process lives

A run's liveness is its lock, not its pid: the kernel drops a flock when the process dies, even by
``kill -9``, so a ``running`` row whose lock can be taken is really ``interrupted``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import tomli_w

from practicum import fileio
from practicum.config import Experiment
from practicum.errors import PracticumError, UsageError

STATUSES = ("running", "finished", "failed", "interrupted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    experiment  TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    status      TEXT NOT NULL,
    dir         TEXT NOT NULL,
    started     REAL NOT NULL,
    ended       REAL,
    duration    REAL,
    pid         INTEGER,
    headline    TEXT,
    summary     TEXT NOT NULL DEFAULT '{}',
    error       TEXT,
    command     TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (config_hash);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment);
"""


def home() -> Path:
    """Where runs live: ``$PRACTICUM_HOME`` or ``./runs``."""
    return Path(os.environ.get("PRACTICUM_HOME") or "runs")


# ---------------------------------------------------------------------------------------------
# Liveness locks


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_alive(run_dir: Path) -> bool:
    lock = run_dir / ".lock"
    if not lock.exists():
        return False
    fd = try_lock(lock)
    if fd is None:
        return True
    os.close(fd)
    return False


# ---------------------------------------------------------------------------------------------
# The index


@dataclass
class RunRecord:
    id: str
    experiment: str
    config_hash: str
    status: str
    dir: str
    started: float
    ended: float | None
    duration: float | None
    pid: int | None
    headline: str | None
    summary: dict
    error: str | None
    command: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunRecord":
        data = dict(row)
        data["summary"] = json.loads(data["summary"] or "{}")
        return cls(**data)

    def as_json(self) -> dict:
        return dict(self.__dict__)


class Index:
    """The SQLite index. Safe for concurrent processes: WAL, a busy timeout, and claims made inside
    ``BEGIN IMMEDIATE`` so two workers never take the same trial."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else home()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "index.sqlite"
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self._retry(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
        self.db.execute("PRAGMA busy_timeout=60000")
        self._retry(lambda: self.db.executescript(SCHEMA))

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _retry(fn, attempts: int = 20):
        """SQLite's busy handler does not cover every lock conflict (e.g. WAL recovery): retry."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    def _transaction(self, fn):
        def attempt():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return result

        return self._retry(attempt)

    # -- queries ---------------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return RunRecord.from_row(row) if row else None

    def list(self, experiment: str | None = None) -> list[RunRecord]:
        self.mark_dead_runs()
        sql, args = "SELECT * FROM runs", ()
        if experiment:
            sql, args = sql + " WHERE experiment = ?", (experiment,)
        rows = self.db.execute(sql + " ORDER BY started", args).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def by_hash(self, config_hash: str) -> list[RunRecord]:
        rows = self.db.execute(
            "SELECT * FROM runs WHERE config_hash = ? ORDER BY started", (config_hash,)
        ).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def find(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, or run directory path."""
        self.mark_dead_runs()
        path = Path(ref)
        if path.is_dir():
            rows = self.db.execute("SELECT * FROM runs WHERE dir = ?", (str(path.resolve()),))
        else:
            rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ?", (ref + "%",))
        found = [RunRecord.from_row(r) for r in rows.fetchall()]
        if not found:
            raise UsageError(f"no run '{ref}' in {self.path} (see 'practicum runs')")
        if len(found) > 1:
            raise UsageError(f"run '{ref}' is ambiguous: {', '.join(r.id for r in found[:5])}")
        return found[0]

    # -- state changes ---------------------------------------------------------------------
    def mark_dead_runs(self) -> None:
        """``running`` rows whose process is gone (lock free) become ``interrupted``."""
        rows = self.db.execute("SELECT id, dir FROM runs WHERE status = 'running'").fetchall()
        for row in rows:
            if not is_alive(Path(row["dir"])):
                self._transaction(
                    lambda r=row: self.db.execute(
                        "UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running'",
                        (r["id"],),
                    )
                )

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        assert status in STATUSES, status
        fields["status"] = status
        if "summary" in fields:
            fields["summary"] = json.dumps(fields["summary"], sort_keys=True)
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._transaction(
            lambda: self.db.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))
        )

    def claim(self, cfg: Experiment, force: bool = False) -> "Claim":
        """Decide what running ``cfg`` means, atomically with respect to other processes.

        Returns a Claim whose ``action`` is ``finished`` (a finished run exists: nothing to do),
        ``busy`` (another live process runs this config), ``resume`` (an interrupted run was taken
        over) or ``new`` (a fresh run directory was created). For ``resume`` and ``new`` the claim
        holds the run's lock.
        """
        config_hash = cfg.config_hash()

        def decide() -> Claim:
            existing = self.by_hash(config_hash)
            if not force:
                done = [r for r in existing if r.status == "finished"]
                if done:
                    return Claim("finished", done[-1])
                for record in reversed(existing):
                    if record.status not in ("running", "interrupted"):
                        continue
                    fd = try_lock(Path(record.dir) / ".lock")
                    if fd is None:
                        return Claim("busy", record)
                    self.db.execute(
                        "UPDATE runs SET status = 'running', pid = ?, ended = NULL WHERE id = ?",
                        (os.getpid(), record.id),
                    )
                    return Claim("resume", record, fd)
            return self._new_run(cfg, config_hash)

        return self._transaction(decide)

    def _new_run(self, cfg: Experiment, config_hash: str) -> "Claim":
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        run_dir = (self.root / cfg.name / run_id).resolve()
        run_dir.mkdir(parents=True)
        fd = try_lock(run_dir / ".lock")
        assert fd is not None
        self.db.execute(
            "INSERT INTO runs (id, experiment, config_hash, status, dir, started, pid, command)"
            " VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
            (run_id, cfg.name, config_hash, str(run_dir), time.time(), os.getpid(), command_line()),
        )
        return Claim("new", self.get(run_id), fd)


@dataclass
class Claim:
    action: str  # finished | busy | resume | new
    record: RunRecord
    lock_fd: int | None = None


_invocation: list[str] | None = None


def set_invocation(argv: list[str]) -> None:
    """The CLI records its own arguments, so provenance is right even when called in-process."""
    global _invocation
    _invocation = list(argv)


def command_line() -> str:
    import shlex

    if _invocation is not None:
        return shlex.join(["practicum", *_invocation])
    return shlex.join(sys.argv)


# ---------------------------------------------------------------------------------------------
# A run, as a task sees it


class Run:
    """The handle a task writes through: metrics, checkpoints, figures and the final summary."""

    def __init__(self, index: Index, record: RunRecord, cfg: Experiment, lock_fd: int, resumed: bool):
        self.index = index
        self.record = record
        self.id = record.id
        self.dir = Path(record.dir)
        self.cfg = cfg
        self.resumed = resumed
        self._lock_fd = lock_fd
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self._t0 = time.time()
        self.scope_start = 0  # where the metrics of the next model trained in this run begin
        if not resumed:
            fileio.write_text(self.dir / "config.toml", tomli_w.dumps(_toml_ready(cfg.model_dump(mode="json"))))

    # -- metrics ---------------------------------------------------------------------------
    def log(self, metrics: dict[str, float], *, split: str, step: int, epoch: float | None = None) -> None:
        """Append one line per value to metrics.jsonl (flushed, so a crash loses at most a line)."""
        now = time.time()
        for name, value in metrics.items():
            line = {"step": step, "epoch": epoch, "split": split, "name": name,
                    "value": float(value), "time": now}
            self._metrics.write(json.dumps(line) + "\n")
        self._metrics.flush()

    def metrics_position(self) -> int:
        """Byte offset of metrics.jsonl: store it in a checkpoint, rewind to it on resume."""
        self._metrics.flush()
        return self._metrics.tell()

    def rewind_metrics(self, position: int) -> None:
        """Drop lines logged after a checkpoint (they will be logged again, identically)."""
        self._metrics.flush()
        self._metrics.truncate(position)
        self._metrics.seek(position)

    def scope(self, name: str) -> "Scope":
        """A view for one of several models trained in turn in this run (see ``Scope``)."""
        return Scope(self, name)

    # -- files -----------------------------------------------------------------------------
    @property
    def tb_dir(self) -> Path:
        return self.dir / "tb"

    def checkpoint_path(self, name: str) -> Path:
        (self.dir / "checkpoints").mkdir(exist_ok=True)
        return self.dir / "checkpoints" / name

    def figure_path(self, name: str) -> Path:
        (self.dir / "figures").mkdir(exist_ok=True)
        return self.dir / "figures" / name

    def artifact_path(self, name: str) -> Path:
        return self.dir / name

    def write_table(self, name: str, columns: list[str], rows: list[list], caption: str = "") -> None:
        """``tables/<name>.json``: the run report shows it under its caption (tables sort by name)."""
        fileio.write_json(self.dir / "tables" / f"{name}.json",
                          {"columns": columns, "rows": rows, "caption": caption}, sort_keys=False)

    # -- end -------------------------------------------------------------------------------
    def _close(self, status: str, **fields) -> None:
        self._metrics.close()
        ended = time.time()
        self.index.set_status(self.id, status, ended=ended, duration=self._elapsed(ended), **fields)
        os.close(self._lock_fd)

    def _elapsed(self, ended: float) -> float:
        # Duration accumulates over resumptions: previous sessions plus this one.
        return (self.record.duration or 0.0) + (ended - self._t0)

    def finish(self, summary: dict[str, float], headline: str | None = None) -> None:
        fileio.write_json(self.dir / "summary.json", summary)
        self._close("finished", summary=summary, headline=headline, error=None)

    def fail(self, error: str) -> None:
        """Marked failed, with the reason in the index (``error``, the headline) and in summary.json;
        the checkpoints stay (the last good state of a diverged run)."""
        fileio.write_json(self.dir / "summary.json", {"error": error})
        self._close("failed", error=error, summary={"error": error}, headline=f"failed: {error}"[:120])

    def interrupt(self) -> None:
        self._close("interrupted")


class Scope:
    """One model of a run that trains several in turn (the language models, the translators).

    Its metric splits carry the model's name (``train`` -> ``train-gru``), its checkpoints live in
    ``checkpoints/<name>/`` and its TensorBoard events in ``tb/<name>/``; everything else is the
    run's. ``scope_start`` is shared with the run: where the next model's metric lines begin, so
    a resumed run drops only the lines of the model it resumes.
    """

    def __init__(self, run, name: str):
        self.run, self.name = run, name

    def __getattr__(self, attr):  # id, dir, cfg, index, resumed, figure_path, metrics_position, ...
        return getattr(self.run, attr)

    @property
    def scope_start(self) -> int:
        return self.run.scope_start

    @scope_start.setter
    def scope_start(self, position: int) -> None:
        self.run.scope_start = position

    @property
    def tb_dir(self) -> Path:
        return self.run.dir / "tb" / self.name

    def log(self, metrics: dict[str, float], *, split: str, step: int, epoch: float | None = None) -> None:
        self.run.log(metrics, split=f"{split}-{self.name}", step=step, epoch=epoch)

    def checkpoint_path(self, name: str) -> Path:
        folder = self.run.dir / "checkpoints" / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name


def _toml_ready(value):
    """TOML has no null: drop None values (they are the schema defaults anyway)."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_ready(v) for v in value]
    return value


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete line of metrics.jsonl (a torn last line from a crash is skipped)."""
    rows = []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def iter_runs(index: Index, refs: list[str]) -> Iterator[RunRecord]:
    for ref in refs:
        yield index.find(ref)


def require_finished(record: RunRecord) -> None:
    if record.status != "finished":
        raise PracticumError(f"run {record.id} is {record.status}; it has no final metrics yet")
