"""Past one machine (issue 17): torchrun across two "nodes" and its elastic restarts, sweeps through
submitit's own LocalExecutor (real subprocesses, submitit's real pickling, submission and requeue),
and the run store shared by two "hosts" (separate index files on one run directory)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from practicum import store
from practicum.config import load_experiment
from practicum.store import Index, Run

HALFMOON = ["-o", "train.epochs=1500", "-o", "train.eval_every=100", "-o", "train.checkpoint_every=100"]
GRID = ["sweep", "numpy-halfmoon", "--grid", "optim.lr=0.1,0.2,0.3", *HALFMOON, "--executor", "submitit-local"]
# LeNet on 1500 images, 2 epochs; 24 steps per epoch with a global batch of 64 on any number of
# processes, a checkpoint every 3 steps.
# On CPU (gloo) even on a GPU host: two ranks on one GPU would be refused (nccl: a GPU per rank).
LENET = ["run", "mnist-lenet", "--quick", "--no-report", "-o", "data.train_limit=1500", "-o", "train.epochs=2",
         "-o", "train.checkpoint_steps=3", "-o", "train.log_steps=2", "-o", "train.eval_steps=10",
         "-o", "train.device=cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def statuses(home: Path, experiment: str) -> list[dict]:
    found = []
    for path in sorted(home.glob(f"{experiment}/*/status.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # mid-replace on a slow filesystem: not here, but be kind
            pass
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def torchrun(*args: str, command: list[str], env: dict, **popen) -> subprocess.Popen:
    """``torchrun ARGS -m practicum COMMAND``, as ``python -m torch.distributed.run``."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args, "-m", "practicum", *command],
                            env=env, **popen)


def last_step(home: Path) -> dict | None:
    found = list(home.glob("mnist-lenet/*/checkpoints/last.pt"))
    try:
        return torch.load(found[0], weights_only=True)["loop"] if found else None
    except Exception:  # noqa: BLE001 - atomic writes, but the listing may race a replace
        return None


# --- torchrun -------------------------------------------------------------------------------------


def test_two_torchrun_nodes_train_one_run_in_the_one_process_band(cli, home, tmp_path, monkeypatch):
    port = free_port()
    nodes = [torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank), "--rdzv-backend", "c10d",
                      "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
                      command=["run", "mnist-lenet", "--quick", "--no-report", "-o", "train.device=cpu"],
                      env=env_for(PRACTICUM_HOST=f"node{rank}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True)
             for rank in (0, 1)]
    outs = [n.communicate(timeout=240) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs
    (record,) = statuses(home, "mnist-lenet")  # written once, by global rank 0
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    run_dir = next(home.glob("mnist-lenet/*/"))
    world = json.loads((run_dir / "env.json").read_text())["world"]
    assert world["nodes"] == 2 and world["processes"] == 2 and world["hosts"] == ["node0", "node1"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == len(
        {line for line in (run_dir / "metrics.jsonl").read_text().splitlines()})  # no rank wrote twice
    # the same config on one process: the same global batches, so the same band
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli("run", "mnist-lenet", "--quick", "--no-report", "-o", "train.device=cpu")[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    two_acc, one_acc = record["summary"]["test/accuracy"], one["summary"]["test/accuracy"]
    assert two_acc > 0.3 and abs(two_acc - one_acc) < 0.05
    assert record["summary"]["train/steps"] == one["summary"]["train/steps"]


@pytest.fixture(scope="module")
def uninterrupted_two_processes(tmp_path_factory, shared_cache, data_mirror) -> Path:
    """The LENET run on 2 processes, never interrupted: what a resume on 2 processes must equal."""
    home = tmp_path_factory.mktemp("reference") / "runs"
    out = subprocess.run([sys.executable, "-m", "practicum", *LENET, "--nproc", "2"], capture_output=True, text=True,
                         timeout=240, env=env_for(PRACTICUM_HOME=str(home), PRACTICUM_DATA_CACHE=str(shared_cache),
                                                  PRACTICUM_DATA_MIRROR=str(data_mirror), PRACTICUM_OFFLINE="1"))
    assert out.returncode == 0, out.stderr
    return next(home.glob("mnist-lenet/*/"))


@pytest.mark.parametrize("victim", [0, 1])
def test_a_worker_killed_under_max_restarts_resumes_from_its_checkpoint(home, victim, uninterrupted_two_processes):
    """kill -9 of global rank 0 (the claim's holder: its restart takes the dead claim over) or of
    rank 1 (rank 0 fails on the broken connection, records the run interrupted, not failed);
    torchrun restarts both workers and the run resumes from its last checkpoint and finishes."""
    agent = torchrun("--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "1", "--rdzv-backend", "c10d",
                     "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", f"restart-{victim}",
                     command=LENET, env=env_for(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"),  # pytorch#135712
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = wait_for(lambda: (c := last_step(home)) and c["step"] >= 6 and c["position"] > 0 and c, 180,
                  "a mid-epoch checkpoint")
    (record,) = statuses(home, "mnist-lenet")
    rank0 = record["pid"]
    pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True,
                                           text=True).stdout.split()]
    assert rank0 in pids and len(pids) == 2
    os.kill(rank0 if victim == 0 else next(p for p in pids if p != rank0), signal.SIGKILL)
    out, err = agent.communicate(timeout=240)
    assert agent.returncode == 0, err[-3000:]
    (record,) = statuses(home, "mnist-lenet")  # one run: resumed, not started over
    assert record["status"] == "finished" and record["summary"]["train/steps"] == 48
    run_dir = next(home.glob("mnist-lenet/*/"))
    log = (run_dir / "store.log").read_text()
    assert "resumed by" in log
    if victim == 0:
        assert "took over the claim" in log and ("is gone" in log or "the scheduler restarted" in log)
    else:
        assert "interrupted by an error, to be resumed" in log
    env = json.loads((run_dir / "env.json").read_text())
    assert [s["world"]["restart"] for s in [env, *env["resumed"]]] == [0, 1]
    assert "resume/exact" not in record["summary"] and "resume_differences" not in env  # same world: exact
    steps = [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if r["split"] == "train" and r["name"] == "loss"]
    assert steps == sorted(set(steps)) and steps[-1] == 48  # rewound to the checkpoint: no step twice
    assert ck["step"] < 48
    # the same world size: bit-identical to the uninterrupted run
    a = torch.load(uninterrupted_two_processes / "model.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_on_another_world_size_is_recorded_as_not_bit_identical(home):
    child = subprocess.Popen([sys.executable, "-m", "practicum", *LENET, "--nproc", "2"], env=env_for(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: (c := last_step(home)) and c["step"] >= 6 and c["position"] > 0, 180, "a checkpoint")
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    out = subprocess.run([sys.executable, "-m", "practicum", *LENET], env=env_for(), capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "trained on 2 process(es) and resumes on 1" in out.stderr
    (record,) = statuses(home, "mnist-lenet")
    assert record["status"] == "finished" and record["summary"]["resume/exact"] == 0.0
    assert "not bit-identical" in record["headline"] and "world.processes: 2 -> 1" in record["notes"]
    env = json.loads((next(home.glob("mnist-lenet/*/")) / "env.json").read_text())
    assert env["resume_bit_identical"] is False and "world.processes: 2 -> 1" in env["resume_differences"]


# --- sweeps through submitit ----------------------------------------------------------------------


def submissions(home: Path, study: str) -> int:
    return len(list((home / "studies" / study / "submitit").glob("*_submitted.pkl")))


def test_submitit_sweep_runs_every_trial_once_even_while_jobs_are_in_flight(cli, home):
    code, out, err = cli(*GRID, "--no-wait")
    assert code == 0 and "3 trials queued or running" in out, err
    jobs = json.loads((home / "studies" / "sweep-numpy-halfmoon" / "jobs.json").read_text())
    assert len(jobs) == 3
    code, out, err = cli(*GRID)  # again, while the jobs run: it submits nothing and waits for them
    assert code == 0, err
    assert "0 to submit" in err and ", 0 failed" in out
    assert submissions(home, "sweep-numpy-halfmoon") == 3
    runs = json.loads(cli("runs", "--json")[1])
    assert len(runs) == 3 and {r["status"] for r in runs} == {"finished"} and len({r["config_hash"] for r in runs}) == 3
    code, out, _ = cli(*GRID)
    assert code == 0 and "3 trials: 3 already finished, 0 ran, 0 failed" in out
    assert submissions(home, "sweep-numpy-halfmoon") == 3 and len(json.loads(cli("runs", "--json")[1])) == 3


def test_submitit_trial_killed_mid_run_is_the_only_one_rerun(home):
    args = [sys.executable, "-m", "practicum", *GRID, "-o", "train.epochs=4000"]
    sweep = subprocess.Popen(args, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = wait_for(lambda: next((s for s in statuses(home, "numpy-halfmoon") if s["status"] == "running"
                                    and list(home.glob(f"numpy-halfmoon/{s['id']}/checkpoints/last.npz"))), None),
                      120, "a trial's first checkpoint")
    os.kill(victim["pid"], signal.SIGKILL)  # the submitit task itself: it runs the trial in-process
    out, err = sweep.communicate(timeout=180)
    assert sweep.returncode == 1 and "3 trials: 0 already finished, 2 ran, 1 failed" in out, err
    index = Index(home)
    assert {r.id: r.status for r in index.list()}[victim["id"]] == "interrupted"
    again = subprocess.run(args, env=env_for(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and "3 trials: 2 already finished, 1 ran, 0 failed" in again.stdout, again.stderr
    runs = Index(home).list()
    assert len(runs) == 3 and {r.status for r in runs} == {"finished"}  # the victim resumed, not restarted
    assert "resumed by" in (home / "numpy-halfmoon" / victim["id"] / "store.log").read_text()
    assert submissions(home, "sweep-numpy-halfmoon") == 4


def test_a_trial_at_its_time_limit_is_requeued_and_resumes(home, tmp_path, monkeypatch):
    """submitit signals the task (USR2) ``signal_delay_s`` before its limit, calls
    TrialJob.checkpoint and requeues it; the run is interrupted and the requeued task resumes it,
    ending bit-identical to an uninterrupted run."""
    import numpy as np

    from practicum.cluster import Resources
    from practicum.execute import run_experiment
    from practicum.sweeps import plan, run_plan

    overrides = ["train.epochs=16000", "train.eval_every=2000", "train.checkpoint_every=100"]
    p = plan("numpy-halfmoon", {"optim.lr": [0.3]}, seeds=1, overrides=overrides)
    # a 9 s limit, signalled 6 s before it: every attempt trains about 2 s after its start-up
    res = Resources(time_min=0.15, signal_delay_s=6, max_requeues=20)
    counts = run_plan(p, executor="submitit-local", resources=res, log=lambda m: None)
    assert counts == {"total": 1, "skipped": 0, "ran": 1, "failed": 0}
    (record,) = statuses(home, "numpy-halfmoon")
    assert record["status"] == "finished"
    assert (home / "numpy-halfmoon" / record["id"] / "store.log").read_text().count("resumed by") >= 1
    err = "".join(f.read_text() for f in (home / "studies" / p.name / "submitit").glob("*_log.err"))
    assert "Caught signal SIGUSR2" in err and "timed-out" in err
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "reference"))
    ref = run_experiment(load_experiment("numpy-halfmoon", [*overrides, "optim.lr=0.3"], seed=0))[1]
    with np.load(Path(ref.dir) / "weights.npz") as a, np.load(home / "numpy-halfmoon" / record["id"] /
                                                               "weights.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_slurm_array_script_carries_the_resources(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    from practicum.cluster import Resources, parse_time, slurm_parameters

    assert [parse_time(t) for t in ("90", "1:30:00", "2-00:00:00", "45:30")] == [90, 90, 2880, 45.5]
    res = Resources(partition="gpu", gpus_per_trial=1, cpus_per_trial=8, time_min=parse_time("1:30:00"),
                    max_parallel=4)
    script = _make_sbatch_string(command="python -m submitit.core._submit X", folder=tmp_path, map_count=10,
                                 **slurm_parameters(res, "study-x"))
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--time=90", "--array=0-9%4",
                 "--signal=USR2@90", "--job-name=study-x"):
        assert f"#SBATCH {line}" in script, line


def test_cluster_flags_need_a_cluster_executor(cli):
    code, _, err = cli("sweep", "numpy-halfmoon", "--grid", "optim.lr=0.1", "--partition", "gpu")
    assert code == 2 and "--partition need --executor slurm" in err
    code, _, err = cli("sweep", "numpy-halfmoon", "--grid", "optim.lr=0.1", "--executor", "slurm", "--workers", "2")
    assert code == 2 and "--max-parallel" in err


# --- the store on a shared filesystem -------------------------------------------------------------


def host_env(home: Path, tmp_path: Path, name: str, **extra) -> dict:
    """One fake host: its own name and its own index file, the shared run directory."""
    return env_for(PRACTICUM_HOME=str(home), PRACTICUM_HOST=name,
                   PRACTICUM_INDEX=str(tmp_path / f"index-{name}.sqlite"), **extra)


def test_two_hosts_claiming_the_same_trials_neither_duplicate_nor_lose_one(home, tmp_path):
    args = [sys.executable, "-m", "practicum", "sweep", "numpy-halfmoon", "--grid", "optim.lr=0.1,0.2,0.3,0.4",
            "--seeds", "2", "-o", "train.epochs=600", "-o", "train.eval_every=100"]
    hosts = [subprocess.Popen(args, env=host_env(home, tmp_path, name), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("alpha", "beta")]
    outs = [h.communicate(timeout=180) for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0], outs
    ran = [int(out.split(" ran")[0].rsplit(", ", 1)[1]) for out, _ in outs]
    records = statuses(home, "numpy-halfmoon")
    assert len(records) == 8 and {r["status"] for r in records} == {"finished"}
    assert len({r["config_hash"] for r in records}) == 8  # none twice
    assert sum(ran) == 8 and {r["host"] for r in records} <= {"alpha", "beta"}
    for name in ("alpha", "beta"):  # each host's own cache sees every run
        listed = subprocess.run([sys.executable, "-m", "practicum", "runs", "--json"], capture_output=True,
                                text=True, env=host_env(home, tmp_path, name))
        assert len(json.loads(listed.stdout)) == 8
        assert (tmp_path / f"index-{name}.sqlite").exists()
    assert not (home / "index.sqlite").exists()  # no host wrote SQLite in the shared directory


CLAIM_AND_HANG = (  # a training loop's steps, without writes: only the heartbeat can tell it
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup: interrupt_main would do nothing\n"
    "from practicum.config import load_experiment\n"
    "from practicum.execute import start\n"
    "from practicum.store import ClaimLost\n"
    "claim, run = start(load_experiment('numpy-halfmoon', quick=True))\n"
    "print(run.id, flush=True)\n"
    "try:\n"
    "    while True:\n"
    "        run.guard()\n"
    "        time.sleep(0.05)\n"
    "except ClaimLost:\n"
    "    run.interrupt()\n"
    "    print('lost' if run.hold.lost else 'interrupted', flush=True)\n"
)


@pytest.mark.timeout(120)
def test_a_stale_claim_of_another_host_is_taken_over_and_logged(home, tmp_path, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", CLAIM_AND_HANG], stdout=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL,
                             env=host_env(home, tmp_path, "alpha", PRACTICUM_CLAIM_TIMEOUT="2"))
    run_id = child.stdout.readline().strip()
    cfg = load_experiment("numpy-halfmoon", quick=True)
    monkeypatch.setenv("PRACTICUM_HOST", "beta")
    monkeypatch.setenv("PRACTICUM_INDEX", str(tmp_path / "index-beta.sqlite"))
    monkeypatch.setenv("PRACTICUM_CLAIM_TIMEOUT", "2")
    try:
        index = Index(home)
        assert index.claim(cfg).action == "busy"  # alive: its heartbeat is fresh
        os.kill(child.pid, signal.SIGSTOP)  # frozen (a hung node): its heartbeat stops
        assert [r.status for r in index.list()] == ["running"]  # beta cannot know yet
        time.sleep(2.5)
        assert [r.status for r in index.list()] == ["interrupted"]
        claim = index.claim(cfg)
        assert claim.action == "resume" and claim.record.id == run_id and claim.record.host == "beta"
        log = (home / "numpy-halfmoon" / run_id / "store.log").read_text()
        assert f"beta pid {os.getpid()} took over the claim of host alpha pid {child.pid}" in log
        assert "heartbeat is" in log and "timeout 2 s" in log
        os.kill(child.pid, signal.SIGCONT)  # it wakes up, sees the newer claim and stops recording nothing
        assert child.stdout.readline().strip() == "lost"
        child.wait(timeout=30)
        status = json.loads((home / "numpy-halfmoon" / run_id / "status.json").read_text())
        assert status["status"] == "running" and status["host"] == "beta" and status["pid"] == os.getpid()
        run = Run(index, claim.record, cfg, claim.hold, resumed=True)
        run.finish({"test/accuracy": 0.5})
        assert [r.status for r in index.list()] == ["finished"]
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()


def test_reindex_rebuilds_a_deleted_index_and_reads_see_other_hosts(cli, home):
    assert cli("run", "quickstart", "--quick", "--no-report")[0] == 0
    assert cli("run", "quickstart", "--quick", "--no-report", "-o", "optim.lr=0.3")[0] == 0
    before = json.loads(cli("runs", "--json")[1])
    (home / "index.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (home / f"index.sqlite{suffix}").unlink(missing_ok=True)
    code, out, err = cli("runs", "--reindex", "--json")
    assert code == 0 and "rebuilt from 2 run directories" in err
    assert json.loads(out) == before
    # another host finishes a run behind this cache's back: the next read sees it
    run_dir = Path(before[0]["dir"])
    status = json.loads((run_dir / "status.json").read_text())
    status["headline"] = "edited elsewhere"
    (run_dir / "status.json").write_text(json.dumps(status))
    assert json.loads(cli("runs", "--json")[1])[0]["headline"] == "edited elsewhere"


def test_the_index_stays_off_a_network_filesystem(tmp_path, monkeypatch):
    mounts = (f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path / 'shared'} nfs4 rw 0 0\n"
              f"server:/home {tmp_path / 'home'} nfs rw 0 0\n")
    monkeypatch.delenv("PRACTICUM_INDEX", raising=False)
    monkeypatch.setenv("PRACTICUM_HOST", "node7")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    local = tmp_path / "local" / "runs"
    assert store.index_path(local, mounts) == local.resolve() / "index.sqlite"
    shared = store.index_path(tmp_path / "shared" / "runs", mounts)
    assert shared.parent == tmp_path / "cache" / "practicum" / "index" and shared.name.startswith("node7-")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))  # a cache folder on NFS too
    assert not str(store.index_path(tmp_path / "shared" / "runs", mounts)).startswith(str(tmp_path / "home"))
    monkeypatch.setenv("PRACTICUM_INDEX", str(tmp_path / "mine.sqlite"))
    assert store.index_path(tmp_path / "shared" / "runs", mounts) == tmp_path / "mine.sqlite"


def test_an_index_of_the_flock_days_becomes_status_files(home):
    run_dir = home / "numpy-halfmoon" / "20240101-000000-abcdef"
    run_dir.mkdir(parents=True)
    db = sqlite3.connect(home / "index.sqlite")
    db.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, experiment TEXT, config_hash TEXT, status TEXT,"
                     " dir TEXT, started REAL, ended REAL, duration REAL, pid INTEGER, headline TEXT,"
                     " summary TEXT, error TEXT, command TEXT)")
    db.execute("INSERT INTO runs VALUES ('20240101-000000-abcdef', 'numpy-halfmoon', 'h', 'finished', ?, 1.0,"
               " 2.0, 1.0, 1, 'test/accuracy=0.9', '{\"test/accuracy\": 0.9}', NULL, 'practicum run x')",
               (str(run_dir),))
    db.commit()
    db.close()
    (record,) = Index(home).list()
    assert record.status == "finished" and record.summary == {"test/accuracy": 0.9}
    assert json.loads((run_dir / "status.json").read_text())["headline"] == "test/accuracy=0.9"
