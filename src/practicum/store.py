"""The run store: one directory per run, which is the run's source of truth, plus a per-host
SQLite cache of them all (``practicum.runs()`` is its table).

Layout::

    <home>/<experiment>/<run id>/status.json   # id, config hash, status, pid, host, times, summary, error
                                 config.toml   # fully resolved config (re-runnable as an experiment file)
                                 env.json      # versions, git commit, host, threads, world, command line
                                 metrics.jsonl
                                 summary.json  # flat map "split/metric" -> value
                                 store.log     # what the store did to the run: resumes, claims taken over
                                 checkpoints/ figures/ tb/
    <home>/.claims/<config hash>/<generation>.json   # who runs this identity now, with a heartbeat
    index.sqlite                                      # the cache; where it lives: ``index_path``

The rules, which hold on a filesystem shared by many hosts (NFS, Lustre, GPFS), where neither
SQLite's WAL nor ``flock`` can be trusted:

* Only the process that holds an identity's claim writes the status of that identity's runs,
  and it writes ``status.json`` atomically (temp file + rename), so a reader on any host sees
  the old status or the new one.
* A claim is a file created atomically (``link(2)``, which fails if the name exists, on local
  disks and on NFS alike): generation g+1 of ``.claims/<hash>/``. Whoever creates the next
  generation holds the identity; exactly one creator wins. The holder records host, pid, run id
  and a heartbeat that a thread refreshes every ``timeout / 5``.
* A claim is stale when it was released; when its process is gone (same host: known at once, so
  ``kill -9`` reads as ``interrupted`` immediately); when an earlier attempt of the same
  scheduler job made it (a requeued Slurm job, a torchrun restart); or when its heartbeat is
  older than ``PRACTICUM_CLAIM_TIMEOUT`` seconds (default 300; another host's process, whose pid
  cannot be checked; the hosts' clocks must agree to well within that). Taking a stale claim
  over is creating the next generation; it is logged in the run's ``store.log``. A holder that
  finds a newer generation has lost its claim: its heartbeat marks the hold lost, every write of
  the run (metrics, checkpoints, status, figures, tables) looks at the claims folder first and
  refuses, and the training loops check the mark at every step and stop (``ClaimLost``), with
  any signal disposition: nothing relies on SIGINT, which ``nohup`` and ``cmd &`` ignore.
* The SQLite index is a cache of the run directories, one per host, on a local disk; it is
  rebuilt by ``practicum runs --reindex`` and refreshed (by ``stat`` of every status.json)
  before it answers. Decisions (is there a finished run of this config? may I run it?) read
  the run directories themselves, never the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import tomli_w

from practicum import fileio
from practicum.config import Experiment
from practicum.errors import PracticumError, UsageError

STATUSES = ("running", "finished", "failed", "interrupted")
RECORD_FIELDS = ("id", "experiment", "config_hash", "status", "started", "ended", "duration", "pid", "host",
                 "headline", "summary", "error", "command", "notes")
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    experiment  TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    status      TEXT NOT NULL,  -- as a reader sees it: 'running' with a dead claim reads 'interrupted'
    recorded    TEXT NOT NULL,  -- as status.json says
    dir         TEXT NOT NULL UNIQUE,
    started     REAL NOT NULL,
    ended       REAL,
    duration    REAL,
    pid         INTEGER,
    host        TEXT,
    headline    TEXT,
    summary     TEXT NOT NULL DEFAULT '{}',
    error       TEXT,
    command     TEXT,
    notes       TEXT NOT NULL DEFAULT '[]',
    stamp       TEXT NOT NULL   -- inode, mtime and size of status.json when it was read
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (config_hash);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment);
"""

# Filesystems that several hosts mount: SQLite must not be written there.
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
                       "fuse.glusterfs", "fuse.sshfs", "fuse.cephfs", "afs", "panfs", "pvfs2", "orangefs",
                       "wekafs", "9p", "fuse.juicefs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone"}


def home() -> Path:
    """Where runs live: ``$PRACTICUM_HOME`` or ``./runs``."""
    return Path(os.environ.get("PRACTICUM_HOME") or "runs")


def host() -> str:
    """This host's name in claims and status files (``$PRACTICUM_HOST`` overrides it: tests fake two hosts)."""
    return os.environ.get("PRACTICUM_HOST") or socket.gethostname()


def claim_timeout() -> float:
    """Seconds without a heartbeat after which another host's claim is stale."""
    return float(os.environ.get("PRACTICUM_CLAIM_TIMEOUT") or 300)


# ---------------------------------------------------------------------------------------------
# Where the index lives


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (Linux: the longest mount point in
    /proc/self/mounts that contains it); None where that cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    path, best, kind = str(Path(path).resolve()), "", None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def is_network_path(path: Path, mounts: str | None = None) -> bool:
    return (filesystem_type(path, mounts) or "") in NETWORK_FILESYSTEMS


def index_path(root: Path, mounts: str | None = None) -> Path:
    """``$PRACTICUM_INDEX`` if set; else ``<root>/index.sqlite`` when the run root is on a local
    disk (one machine: today's layout); else, for a root on a network filesystem, a file per host
    and root in a local cache folder (``$XDG_CACHE_HOME`` or ~/.cache when local, else the temp
    folder, which Slurm points at node-local scratch): SQLite is never written over the network."""
    if os.environ.get("PRACTICUM_INDEX"):
        return Path(os.environ["PRACTICUM_INDEX"])
    root = Path(root).resolve()
    if not is_network_path(root, mounts):
        return root / "index.sqlite"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if is_network_path(cache, mounts):
        cache = Path(tempfile.gettempdir())
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return cache / "practicum" / "index" / f"{host()}-{tag}.sqlite"


# ---------------------------------------------------------------------------------------------
# Processes and scheduler jobs


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid apart); None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_ = stat.rsplit(")", 1)[1].split()
    return None if fields_[0] in ("Z", "X") else fields_[19]  # a zombie is dead


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs (and is the one that started at ``start``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        return now is not None and (start is None or now == start)
    return True


def job_attempt() -> dict | None:
    """The scheduler job this process belongs to and which attempt of it this is: a Slurm job
    keeps its id when it is requeued (SLURM_RESTART_COUNT counts), a torchrun job its rendezvous
    id over elastic restarts (TORCHELASTIC_RESTART_COUNT). A claim made by an earlier attempt of
    the same job is dead: the scheduler stopped that attempt before starting this one."""
    env, parts, attempt = os.environ, [], []
    if env.get("SLURM_JOB_ID"):
        parts.append(f"slurm:{env['SLURM_JOB_ID']}")
        attempt.append(int(env.get("SLURM_RESTART_COUNT") or 0))
    if env.get("TORCHELASTIC_RUN_ID") not in (None, "", "none"):  # "none": torchrun's default, not unique
        parts.append(f"torchrun:{env['TORCHELASTIC_RUN_ID']}")
        attempt.append(int(env.get("TORCHELASTIC_RESTART_COUNT") or 0))
    return {"id": "/".join(parts), "attempt": attempt} if parts else None


# ---------------------------------------------------------------------------------------------
# Claims


def _generations(folder: Path) -> list[int]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


def _generation_path(folder: Path, gen: int) -> Path:
    return folder / f"{gen:08d}.json"


def _read_claim(path: Path) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
        st = path.stat()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # only where link(2) is missing (see _create); judged by its age
        return {"unreadable": True, "heartbeat": st.st_mtime}


def _create(path: Path, data: dict) -> bool:
    """Create ``path`` holding ``data`` unless it exists, atomically: the complete file is
    written under a temporary name, then hard-linked to ``path`` (link fails if the name is
    taken, on NFS too). Returns False when another process created it first."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if os.stat(tmp).st_nlink == 2:  # NFS: the link was made, its reply was lost
            return True
        if e.errno not in (1, 38, 95):  # EPERM, ENOSYS, EOPNOTSUPP: no hard links on this filesystem
            raise
        try:  # O_EXCL instead: atomic too, but readers may see the file empty for a moment
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return True
    finally:
        os.unlink(tmp)


def stale_reason(claim: dict, timeout: float | None = None, now: float | None = None) -> str | None:
    """Why ``claim`` no longer holds its identity, or None when its holder may still be alive."""
    timeout = claim_timeout() if timeout is None else timeout
    now = time.time() if now is None else now
    if claim.get("released"):
        return "released"
    age = now - float(claim.get("heartbeat") or 0)
    if claim.get("unreadable"):
        return f"unreadable for {age:.0f} s" if age > timeout else None
    mine, theirs = job_attempt(), claim.get("job")
    if mine and theirs and mine["id"] == theirs["id"] and mine["attempt"] > theirs["attempt"]:
        return f"made by attempt {theirs['attempt']} of job {theirs['id']}, which the scheduler restarted"
    if claim.get("host") == host():
        if not pid_alive(int(claim["pid"]), claim.get("pid_start")):
            return f"its process {claim['pid']} on {claim['host']} is gone"
        return None
    if age > timeout:
        return f"its heartbeat is {age:.0f} s old (timeout {timeout:.0f} s)"
    return None


def describe(claim: dict) -> str:
    return f"host {claim.get('host')} pid {claim.get('pid')}"


class ClaimLost(PracticumError):
    """Another process took this run's identity over (this one was frozen, or its host was cut
    off, past the claim timeout): the run stops and writes nothing more; the new holder owns it."""


class Hold:
    """This process's claim on one identity: generation ``gen`` of ``folder``, its heartbeat
    refreshed by a daemon thread until ``release``. ``took_over`` is the stale claim it replaced
    (with the reason) when it was not simply released."""

    def __init__(self, folder: Path, gen: int, data: dict, took_over: tuple[dict, str] | None = None):
        self.folder, self.gen, self.data, self.took_over = folder, gen, data, took_over
        self.path = _generation_path(folder, gen)
        self.lost = False  # set by the heartbeat (or a write's look) when another process took the claim
        self.taker: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, **changes: Any) -> None:
        self.data.update(changes)
        fileio.write_json(self.path, self.data)

    def newer(self) -> dict | None:
        """The claim of whoever took this identity over, if someone did."""
        gens = _generations(self.folder)
        if gens and gens[-1] > self.gen:
            return _read_claim(_generation_path(self.folder, gens[-1])) or {}
        return None

    def _mark_lost(self, taker: dict) -> None:
        if not self.lost:
            self.lost, self.taker = True, taker

    def lost_message(self) -> str:
        return f"{describe(self.taker)} took over the claim on this run; stopping without recording anything"

    def check(self, look: bool = False) -> None:
        """Raise ``ClaimLost`` when the claim is lost: as the heartbeat last saw it, or, with
        ``look`` (before every write), as the claims folder says now."""
        if not self.lost and look and (taker := self.newer()) is not None:
            self._mark_lost(taker)
        if self.lost:
            raise ClaimLost(self.lost_message())

    def start(self, interval: float | None = None) -> "Hold":
        interval = interval or max(0.2, min(30.0, claim_timeout() / 5))

        def beat():
            while not self._stop.wait(interval):
                taker = self.newer()
                if taker is not None:
                    self._mark_lost(taker)
                    return
                try:
                    self.update(heartbeat=time.time())
                except OSError:  # the filesystem hiccuped: try again at the next beat
                    pass

        self._thread = threading.Thread(target=beat, name="practicum-heartbeat", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if not self.lost and self.newer() is None:
            self.update(released=True, heartbeat=time.time())


def acquire(folder: Path, data: dict, timeout: float | None = None) -> tuple[Hold | None, dict | None]:
    """Take the claim on the identity of ``folder``: (hold, None), or (None, the live holder's claim)."""
    folder.mkdir(parents=True, exist_ok=True)
    floor = 0
    for _ in range(1000):
        gen = max([floor, *_generations(folder)])
        current = _read_claim(_generation_path(folder, gen)) if gen else None
        reason = None
        if current is not None:
            reason = stale_reason(current, timeout)
            if reason is None:
                return None, current
        mine = {**data, "gen": gen + 1, "heartbeat": time.time()}
        if _create(_generation_path(folder, gen + 1), mine):
            for old in _generations(folder):  # keep the directory small; never the newest
                if old < gen:
                    try:
                        os.unlink(_generation_path(folder, old))
                    except FileNotFoundError:
                        pass
            took = (current, reason) if current is not None and reason != "released" else None
            return Hold(folder, gen + 1, mine, took), None
        floor = gen + 1  # another process created it first: look at theirs
    raise PracticumError(f"{folder}: could not take or read the claim (remove the folder if no run is live)")


def claim_data(run_id: str | None = None) -> dict:
    return {"token": secrets.token_hex(8), "host": host(), "pid": os.getpid(),
            "pid_start": process_start(os.getpid()), "run_id": run_id, "job": job_attempt(),
            "started": time.time()}


def current_claim(folder: Path) -> dict | None:
    gens = _generations(folder)
    return _read_claim(_generation_path(folder, gens[-1])) if gens else None


# ---------------------------------------------------------------------------------------------
# Run records: status.json


@dataclass
class RunRecord:
    id: str
    experiment: str
    config_hash: str
    status: str
    dir: str
    started: float
    ended: float | None = None
    duration: float | None = None
    pid: int | None = None
    headline: str | None = None
    summary: dict = field(default_factory=dict)
    error: str | None = None
    command: str | None = None
    host: str | None = None
    notes: list = field(default_factory=list)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunRecord":
        data = {k: row[k] for k in row.keys() if k in cls.__dataclass_fields__}
        data["summary"] = json.loads(data["summary"] or "{}")
        data["notes"] = json.loads(data["notes"] or "[]")
        return cls(**data)

    @classmethod
    def from_status(cls, data: dict, run_dir: Path) -> "RunRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}, dir=str(run_dir))

    def status_json(self) -> dict:
        """What status.json holds: everything but the directory (the file is in it, and another
        host may mount the run root elsewhere)."""
        return {k: getattr(self, k) for k in RECORD_FIELDS}

    def as_json(self) -> dict:
        return dict(self.__dict__)


def read_status(run_dir: Path) -> dict | None:
    try:
        return fileio.read_json(Path(run_dir) / "status.json")
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # written atomically: only a foreign hand tears it
        return None


def unclosed_sitting_seconds(run_dir: Path) -> float:
    """The time of a sitting that ended without closing its run (kill -9, a lost machine), which
    wrote no duration: from its status.json, written when the sitting started, to its last
    metric line. 0 when the last sitting closed the run (its duration is in the record)."""
    data = read_status(run_dir)
    if not data or data.get("status") != "running":
        return 0.0
    try:
        started = os.stat(Path(run_dir) / "status.json").st_mtime
        last = os.stat(Path(run_dir) / "metrics.jsonl").st_mtime
    except FileNotFoundError:
        return 0.0
    return max(0.0, last - started)


def write_status(record: RunRecord) -> None:
    fileio.write_json(Path(record.dir) / "status.json", record.status_json())


def log_event(run_dir: Path, message: str) -> None:
    """A line in the run's store.log (only the claim holder writes there)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(Path(run_dir) / "store.log", "a", encoding="utf-8") as f:
        f.write(f"{stamp} {message}\n")


def scan_runs(root: Path, experiment: str, config_hash: str | None = None) -> list[RunRecord]:
    """The runs of ``experiment`` (of one identity when ``config_hash`` is given), read from
    their directories: the truth, not the cache. Sorted by start time."""
    found = []
    try:
        entries = list(os.scandir(Path(root) / experiment))
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        data = read_status(Path(entry.path))
        if data and (config_hash is None or data.get("config_hash") == config_hash):
            found.append(RunRecord.from_status(data, Path(entry.path)))
    return sorted(found, key=lambda r: (r.started, r.id))


def effective_status(record: RunRecord, claims_root: Path, claims: dict | None = None) -> str:
    """A run that status.json calls ``running`` runs only while its identity's claim is live
    and names it; otherwise it was interrupted (killed, or its host died)."""
    if record.status != "running":
        return record.status
    claims = {} if claims is None else claims
    if record.config_hash not in claims:
        claims[record.config_hash] = current_claim(claims_root / record.config_hash)
    claim = claims[record.config_hash]
    if claim is None or claim.get("run_id") != record.id or stale_reason(claim) is not None:
        return "interrupted"
    return "running"


# ---------------------------------------------------------------------------------------------
# The index: a cache of the run directories


class Index:
    """The run store of ``root`` (default ``home()``): claims and decisions read the run
    directories; queries go through a SQLite cache at ``index_path(root)`` that is refreshed from
    them first (``refresh``: one ``stat`` per run, a read of each status.json that changed)."""

    def __init__(self, root: Path | None = None, path: Path | None = None):
        root = Path(root) if root is not None else home()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.claims_root = self.root / ".claims"
        self.path = Path(path) if path is not None else index_path(self.root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            migrate_legacy_index(self.root, self.path)
            self._open()
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one: it is only a cache
            self._set_aside(e)
            self._open()
        self._refreshed = False

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        try:
            self._retry(lambda: self.db.execute("PRAGMA journal_mode=WAL"))  # a local file: WAL is safe
            self.db.execute("PRAGMA busy_timeout=60000")
            self._retry(lambda: self.db.executescript(SCHEMA))
            if self.db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
        except BaseException:
            self.db.close()
            raise

    def _set_aside(self, error: Exception) -> None:
        """Move a corrupt index (and its WAL) aside; the next ``refresh`` rebuilds it from the runs."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
        print(f"practicum: warning: the run index {self.path} is unreadable ({error}); moved it to {aside.name} "
              "and rebuilt it from the run directories (it is a cache: no run is lost)", file=sys.stderr)

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

    # -- the cache -------------------------------------------------------------------------
    def refresh(self, experiment: str | None = None) -> None:
        """Bring the cache up to date with the run directories (of one experiment, or all)."""
        if experiment is not None:
            folders = [self.root / experiment]
        else:
            folders = [Path(e.path) for e in os.scandir(self.root)
                       if e.is_dir() and not e.name.startswith(".")]
        sql, args = "SELECT dir, stamp FROM runs", ()
        if experiment is not None:
            sql, args = sql + " WHERE experiment = ?", (experiment,)
        known = dict(self.db.execute(sql, args).fetchall())
        seen, changed = set(), []
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    st = os.stat(os.path.join(entry.path, "status.json"))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                stamp = f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"
                seen.add(entry.path)
                if known.get(entry.path) != stamp:
                    data = read_status(Path(entry.path))
                    if data:
                        changed.append((RunRecord.from_status(data, Path(entry.path)), stamp))
        gone = [d for d in known if d not in seen]

        def write():
            for d in gone:
                self.db.execute("DELETE FROM runs WHERE dir = ?", (d,))
            for record, stamp in changed:
                self.db.execute("DELETE FROM runs WHERE id = ? OR dir = ?", (record.id, record.dir))
                self.db.execute(
                    "INSERT INTO runs (id, experiment, config_hash, status, recorded, dir, started, ended, duration,"
                    " pid, host, headline, summary, error, command, notes, stamp)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, record.experiment, record.config_hash, record.status, record.status, record.dir,
                     record.started, record.ended, record.duration, record.pid, record.host, record.headline,
                     json.dumps(record.summary, sort_keys=True), record.error, record.command,
                     json.dumps(record.notes), stamp))
            # liveness is not in any file: re-judge every run whose status.json says running
            claims: dict = {}
            rows = self.db.execute("SELECT * FROM runs WHERE recorded = 'running'").fetchall()
            for row in rows:
                rec = RunRecord.from_row(row)
                rec.status = "running"
                status = effective_status(rec, self.claims_root, claims)
                if status != row["status"]:
                    self.db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, rec.id))

        if gone or changed or self.db.execute("SELECT 1 FROM runs WHERE recorded = 'running'").fetchone():
            self._transaction(write)
        if experiment is None:
            self._refreshed = True

    def reindex(self) -> int:
        """Rebuild the cache from the run directories; returns the number of runs."""
        self._transaction(lambda: self.db.execute("DELETE FROM runs"))
        self.refresh()
        return self.db.execute("SELECT count(*) FROM runs").fetchone()[0]

    # -- queries ---------------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        """A run by id, read from its directory (fresh)."""
        row = self.db.execute("SELECT dir FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            self.refresh()
            row = self.db.execute("SELECT dir FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
        data = read_status(Path(row["dir"]))
        if data is None:
            return None
        record = RunRecord.from_status(data, Path(row["dir"]))
        record.status = effective_status(record, self.claims_root)
        return record

    def list(self, experiment: str | None = None) -> list[RunRecord]:
        self.refresh(experiment)
        sql, args = "SELECT * FROM runs", ()
        if experiment:
            sql, args = sql + " WHERE experiment = ?", (experiment,)
        rows = self.db.execute(sql + " ORDER BY started, id", args).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def by_hash(self, config_hash: str, experiment: str | None = None) -> list[RunRecord]:
        """The runs of one identity. With ``experiment`` (its name) they are read from the run
        directories (use that for decisions); without, from the cache, refreshed once per Index."""
        if experiment is not None:
            records = scan_runs(self.root, experiment, config_hash)
            claims: dict = {}
            for r in records:
                r.status = effective_status(r, self.claims_root, claims)
            return records
        if not self._refreshed:
            self.refresh()
        rows = self.db.execute(
            "SELECT * FROM runs WHERE config_hash = ? ORDER BY started, id", (config_hash,)
        ).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def find(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, or run directory path."""
        self.refresh()
        path = Path(ref)
        if path.is_dir():
            rows = self.db.execute("SELECT * FROM runs WHERE dir = ?", (str(path.resolve()),))
        else:
            rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ?", (ref + "%",))
        found = [RunRecord.from_row(r) for r in rows.fetchall()]
        if not found:
            raise UsageError(f"no run '{ref}' in {self.root} (see 'practicum runs')")
        if len(found) > 1:
            raise UsageError(f"run '{ref}' is ambiguous: {', '.join(r.id for r in found[:5])}")
        return found[0]

    # -- state changes ---------------------------------------------------------------------
    def set_status(self, run_id: str, status: str, **changes: Any) -> None:
        """Rewrite a run's status.json (for tools and tests; a running run writes its own)."""
        assert status in STATUSES, status
        record = self.get(run_id)
        if record is None:
            raise UsageError(f"no run '{run_id}' in {self.root}")
        for key, value in {**changes, "status": status}.items():
            setattr(record, key, value)
        write_status(record)

    def claim(self, cfg: Experiment, force: bool = False, wait: bool = False) -> "Claim":
        """Decide what running ``cfg`` means, atomically with respect to every process on every host.

        Returns a Claim whose ``action`` is ``finished`` (a finished run exists: nothing to do),
        ``busy`` (a live process runs this config), ``resume`` (an interrupted run was taken
        over) or ``new`` (a fresh run directory was created). For ``resume`` and ``new`` the claim
        holds the identity (``claim.hold``, heartbeat running) until the Run closes.
        ``wait``: when the holder is on another host (its pid cannot be checked), wait until its
        heartbeat either moves (busy) or goes stale (taken over): a requeued scheduler job uses it.
        """
        config_hash = cfg.config_hash()
        if not force and (done := self._finished(cfg.name, config_hash)):
            return Claim("finished", done)
        folder = self.claims_root / config_hash
        deadline, seen_beat = None, None
        while True:
            hold, holder = acquire(folder, claim_data())
            if hold is not None:
                try:
                    return self._decide(cfg, config_hash, hold, force)
                except BaseException:
                    hold.release()
                    raise
            deciding = holder.get("run_id") is None  # it has just claimed: a moment
            remote = wait and holder.get("host") != host() and not deciding
            if deciding or remote:
                now = time.time()
                if deadline is None:
                    deadline = now + (claim_timeout() * 1.5 if remote else 5.0)
                elif remote and holder.get("heartbeat") != seen_beat:
                    deadline = now  # its heartbeat moved: the holder is alive
                seen_beat = holder.get("heartbeat")
                if now < deadline:
                    time.sleep(0.05 if deciding else min(1.0, claim_timeout() / 10))
                    continue
            if not force and (done := self._finished(cfg.name, config_hash)):
                return Claim("finished", done)
            return Claim("busy", self._holder_record(cfg, config_hash, holder))

    def _finished(self, experiment: str, config_hash: str) -> RunRecord | None:
        done = [r for r in scan_runs(self.root, experiment, config_hash) if r.status == "finished"]
        return done[-1] if done else None

    def _holder_record(self, cfg: Experiment, config_hash: str, holder: dict) -> RunRecord:
        run_id = holder.get("run_id")
        data = read_status(self.root / cfg.name / run_id) if run_id else None
        if data:
            record = RunRecord.from_status(data, self.root / cfg.name / run_id)
            record.status = "running"
            return record
        return RunRecord(run_id or "?", cfg.name, config_hash, "running", str(self.root / cfg.name),
                         holder.get("started") or time.time(), pid=holder.get("pid"), host=holder.get("host"))

    def _decide(self, cfg: Experiment, config_hash: str, hold: Hold, force: bool) -> "Claim":
        """With the identity held: reuse, resume or start (reading the run directories again:
        a run may have finished since the first look)."""
        runs = scan_runs(self.root, cfg.name, config_hash)
        if not force:
            done = [r for r in runs if r.status == "finished"]
            if done:
                hold.release()
                return Claim("finished", done[-1])
            for record in reversed(runs):
                if record.status in ("running", "interrupted"):  # no live holder: we hold the identity
                    return self._resume(record, hold)
        return self._new_run(cfg, config_hash, hold)

    def _resume(self, record: RunRecord, hold: Hold) -> "Claim":
        run_dir = Path(record.dir)
        if hold.took_over:
            stale, reason = hold.took_over
            if stale.get("run_id") == record.id:
                log_event(run_dir, f"{host()} pid {os.getpid()} took over the claim of {describe(stale)}: {reason}")
        log_event(run_dir, f"resumed by {host()} pid {os.getpid()} (was {record.status})")
        record.duration = (record.duration or 0.0) + unclosed_sitting_seconds(run_dir)
        record.status, record.pid, record.host, record.ended = "running", os.getpid(), host(), None
        write_status(record)
        hold.update(run_id=record.id)
        hold.start()
        return Claim("resume", record, hold)

    def _new_run(self, cfg: Experiment, config_hash: str, hold: Hold) -> "Claim":
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        run_dir = self.root / cfg.name / run_id
        run_dir.mkdir(parents=True)
        record = RunRecord(run_id, cfg.name, config_hash, "running", str(run_dir), time.time(), pid=os.getpid(),
                           host=host(), command=command_line())
        write_status(record)
        hold.update(run_id=run_id)
        hold.start()
        return Claim("new", record, hold)


@dataclass
class Claim:
    action: str  # finished | busy | resume | new
    record: RunRecord
    hold: Hold | None = None

    @property
    def lock_fd(self) -> Hold | None:  # the name from the days of flock
        return self.hold


def migrate_legacy_index(root: Path, path: Path) -> None:
    """An index written before run directories held their status: its rows become status.json
    files (once); the cache is then rebuilt from them."""
    legacy = root / "index.sqlite"
    marker = root / ".claims" / "legacy-index-migrated"
    if not legacy.exists() or (legacy != path and marker.exists()):
        return
    db = sqlite3.connect(legacy, timeout=60)
    db.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" in tables or "runs" not in tables:
            return
        for row in db.execute("SELECT * FROM runs").fetchall():
            run_dir = Path(row["dir"])
            if run_dir.is_dir() and not (run_dir / "status.json").exists():
                data = {k: row[k] for k in row.keys() if k in RECORD_FIELDS}
                data["summary"] = json.loads(data.get("summary") or "{}")
                write_status(RunRecord.from_status(data, run_dir))
        if legacy == path:
            db.execute("DROP TABLE runs")
            db.commit()
        else:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"migrated to status.json files from {legacy}\n")
    finally:
        db.close()


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
    """The handle a task writes through: metrics, checkpoints, figures and the final summary.
    ``hold`` is the claim on the run's identity (``Claim.hold``); closing the run releases it."""

    def __init__(self, index: Index, record: RunRecord, cfg: Experiment, hold: Hold | None, resumed: bool):
        self.index = index
        self.record = record
        self.id = record.id
        self.dir = Path(record.dir)
        self.cfg = cfg
        self.resumed = resumed
        self.hold = hold
        self.notes: list[str] = []  # why a resume is not bit-identical (see execute.resume_differences)
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self._t0 = time.time()
        self.scope_start = 0  # where the metrics of the next model trained in this run begin
        if not resumed:
            fileio.write_text(self.dir / "config.toml", tomli_w.dumps(_toml_ready(cfg.model_dump(mode="json"))))
            # what the hash was taken of, names resolved (a preset's table, your model's source sha256):
            # `practicum compare` tells from it whether two runs' model source differs
            fileio.write_json(self.dir / "identity.json", cfg.identity())

    # -- the claim -------------------------------------------------------------------------
    def guard(self, look: bool = False) -> None:
        """Stop with ``ClaimLost`` once another process owns this run. The training loops call
        it every step (a flag: free); every write calls it with ``look`` (one listdir of the
        claims folder), so nothing is written after the takeover is known."""
        if self.hold is not None:
            self.hold.check(look)

    @property
    def lost(self) -> bool:
        """Whether another process took the run over (looking at the claims folder now)."""
        try:
            self.guard(look=True)
        except ClaimLost:
            return True
        return False

    # -- metrics ---------------------------------------------------------------------------
    def log(self, metrics: dict[str, float], *, split: str, step: int, epoch: float | None = None) -> None:
        """Append one line per value to metrics.jsonl (flushed, so a crash loses at most a line)."""
        self.guard(look=True)
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
        self.guard(look=True)
        (self.dir / "checkpoints").mkdir(exist_ok=True)
        return self.dir / "checkpoints" / name

    def figure_path(self, name: str) -> Path:
        self.guard(look=True)
        (self.dir / "figures").mkdir(exist_ok=True)
        return self.dir / "figures" / name

    def artifact_path(self, name: str) -> Path:
        self.guard(look=True)
        return self.dir / name

    def write_table(self, name: str, columns: list[str], rows: list[list], caption: str = "") -> None:
        """``tables/<name>.json``: the run report shows it under its caption (tables sort by name)."""
        self.guard(look=True)
        fileio.write_json(self.dir / "tables" / f"{name}.json",
                          {"columns": columns, "rows": rows, "caption": caption}, sort_keys=False)

    # -- end -------------------------------------------------------------------------------
    def _close(self, status: str, **changes) -> None:
        self._metrics.close()
        if self.lost:
            return  # another process owns the run now: its status is theirs to write
        ended = time.time()
        record = self.record
        for key, value in {**changes, "status": status, "ended": ended, "duration": self._elapsed(ended),
                           "notes": list(self.notes)}.items():
            setattr(record, key, value)
        write_status(record)
        if self.hold is not None:
            self.hold.release()

    def _elapsed(self, ended: float) -> float:
        # Duration accumulates over resumptions: previous sessions plus this one.
        return (self.record.duration or 0.0) + (ended - self._t0)

    def finish(self, summary: dict[str, float], headline: str | None = None) -> None:
        if self.lost:
            return self._metrics.close()
        fileio.write_json(self.dir / "summary.json", summary)
        self._close("finished", summary=summary, headline=headline, error=None)

    def fail(self, error: str) -> None:
        """Marked failed, with the reason in status.json (``error``, the headline) and in summary.json;
        the checkpoints stay (the last good state of a diverged run)."""
        if self.lost:
            return self._metrics.close()
        fileio.write_json(self.dir / "summary.json", {"error": error})
        self._close("failed", error=error, summary={"error": error}, headline=f"failed: {error}"[:120])

    def interrupt(self, error: str | None = None) -> None:
        """Marked interrupted (the next claim resumes it); ``error`` says why when it was not a signal."""
        if error and not self.lost:
            log_event(self.dir, f"interrupted by an error, to be resumed: {error}")
        self._close("interrupted", error=error)


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
        self.run.guard(look=True)
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
