"""practicum: run, sweep, reproduce and report deep-learning practicals (see 'practicum COMMAND --help').

Exit status: 0 success, 2 usage/config error, 1 runtime error, 130 interrupted. Errors are one line
on stderr (``error: ...``); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from practicum.errors import PracticumError, UsageError


class Parser(argparse.ArgumentParser):
    """argparse, but its usage errors read like ours (one line, exit 2)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="practicum", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("list", help="the built-in catalog of experiments")
    p.add_argument("--seed", help="only what reproduces this seed report (000, 002, 003, 004), with its bar "
                                  "and the best finished result in the run store")

    p = sub.add_parser("run", help="run an experiment (catalog name or .toml file)")
    p.add_argument("experiment")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path, e.g. -o optim.lr=0.05")
    p.add_argument("--seed", type=int, help="random seed (part of the run's identity)")
    p.add_argument("--force", action="store_true", help="run again even if a finished run exists")
    p.add_argument("--quick", action="store_true", help="the entry's small, fast form (for tests)")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md/report.html")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes (DistributedDataParallel; torchrun works too)")
    p.add_argument("--folds", type=int, metavar="K",
                   help="k-fold cross-validation: K runs, fold k of the training set as 'val' (test unseen), "
                        "and a report of mean ± std over the folds")
    p.add_argument("--no-deps", action="store_true",
                   help="do not run (or reuse) first the runs this entry reads (word2vec embeddings, "
                        "pretrained weights, ...): without them it fails as it says")

    p = sub.add_parser("sweep", help="run a grid x seeds over an experiment, or a study file")
    p.add_argument("experiment", help="experiment (catalog name or .toml) or study (study-*)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="one axis of the grid, e.g. --grid optim.name=sgd,adam")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, help="seeds per grid point (default: the study's, or 1)")
    p.add_argument("--workers", type=int, default=1, help="trials in parallel processes")
    p.add_argument("--quick", action="store_true", help="the small, fast form (for tests)")
    p.add_argument("--name", help="name of the sweep's record (default sweep-<experiment>)")
    p.add_argument("--executor", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: --workers processes here (default); slurm: one Slurm job array through "
                        "submitit; submitit-local: that same path on this machine (submitit's LocalExecutor)")
    p.add_argument("--partition", help="Slurm partition of the trials")
    p.add_argument("--gpus-per-trial", type=int, default=0, metavar="N")
    p.add_argument("--cpus-per-trial", type=int, metavar="N")
    p.add_argument("--time", default="60", metavar="LIMIT",
                   help="time limit per trial attempt: minutes or H:MM:SS (default 60); a trial that reaches "
                        "it is requeued and resumes from its checkpoint")
    p.add_argument("--max-parallel", type=int, metavar="N", help="trials running at once (the array's %%N)")
    p.add_argument("--no-wait", action="store_true",
                   help="submit and return; the same command again submits nothing in flight and reports")

    p = sub.add_parser("reproduce", help="regenerate a seed report: its numbers, figures and claims beside ours")
    p.add_argument("seed", help="000, 002, 003, 004 or all")
    p.add_argument("--plan", action="store_true", help="list the runs it needs, what is done, and how long the rest takes")
    p.add_argument("--quick", action="store_true", help="the entries' and studies' quick forms, one seed (for CI)")
    p.add_argument("--workers", type=int, default=1, help="runs in parallel processes")
    p.add_argument("--no-probe", action="store_true", help="--plan: estimate from recorded runs only")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="N seeds for what the claims compare (their entries and grid points only), fixed "
                        "before the runs: the number a 'cannot tell' says would resolve it")

    p = sub.add_parser("compare", help="what differs between runs: config keys, final metrics (Δ), curves, "
                                       "config.toml diff")
    p.add_argument("runs", nargs="+", help="run ids, id prefixes or run directories")
    p.add_argument("--all-keys", action="store_true", help="every config key, not only those that differ")
    p.add_argument("--out", help="output directory (default <runs>/comparisons/<first id>...)")

    p = sub.add_parser("site", help="the static site over the run store: runs, studies, reproductions, compare")
    p.add_argument("--out", help="folder to write into (default <runs>/site)")

    p = sub.add_parser("runs", help="runs in the index")
    p.add_argument("--experiment")
    p.add_argument("--reindex", action="store_true",
                   help="rebuild this host's index (a cache) from the run directories first")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")

    p = sub.add_parser("report", help="write report.md and report.html for a run or a study")
    p.add_argument("run", help="run id, id prefix, run directory, or study name")

    p = sub.add_parser("new", help="write an experiment file to start from, from a catalog entry")
    p.add_argument("name", help="the new experiment's name (also the file name: NAME.toml)")
    p.add_argument("--from", dest="source", required=True, metavar="ENTRY", help="catalog entry or .toml file")
    p.add_argument("--out", help="file to write (default ./NAME.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = sub.add_parser("export", help="a run's, a study's or a reproduction's numbers as files or LaTeX tables")
    p.add_argument("run", help="run id, id prefix, run directory, study name, or reproduction (000, 004-quick, ...)")
    p.add_argument("--format", default="csv", choices=["csv", "parquet", "json", "latex"],
                   help="latex: booktabs tables (\\usepackage{booktabs}), one .tex file per table")
    p.add_argument("--out", default=".", help="folder to write into (default: here)")

    p = sub.add_parser("data", help="datasets: list, fetch, verify")
    data_sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    data_sub.add_parser("list", help="known datasets with their files, sizes and checksums")
    q = data_sub.add_parser("fetch", help="fetch a dataset into the cache")
    q.add_argument("name")
    q = data_sub.add_parser("verify", help="verify cached files against their checksums")
    q.add_argument("name", nargs="?")
    for name in SITE_COMMANDS:
        sub.choices[name].add_argument("--no-site", action="store_true",
                                       help="do not refresh the run browser (<runs>/site) afterwards")
    return parser


# Commands after which the site (<runs>/site, `practicum site`) is brought up to date.
SITE_COMMANDS = ("run", "sweep", "reproduce")


# ---------------------------------------------------------------------------------------------


def cmd_list(args) -> int:
    from practicum.config import ALIASES, catalog, read_toml

    entries = catalog()
    if args.seed:
        return list_seed(args.seed, entries)
    width = max(map(len, [*entries, *ALIASES]), default=0)
    for alias, target in ALIASES.items():
        print(f"{alias:<{width}}  = {target}: {read_toml(entries[target]).get('description', '')}")
    for name, path in entries.items():
        raw = read_toml(path)
        seed = f"[seed {raw['seed_report']}] " if raw.get("seed_report") else ""
        print(f"{name:<{width}}  {seed}{raw.get('description', '')}")
    return 0


def list_seed(seed: str, entries: dict) -> int:
    """The entries and studies of one seed report: the bar each row holds, and the best finished
    result in the store (any seed) beside it."""
    from practicum.config import read_toml
    from practicum.reproduce import SEEDS
    from practicum.store import Index

    if seed not in SEEDS:
        raise UsageError(f"list --seed {seed}: use one of {', '.join(SEEDS)}")
    index = Index()
    rows = []
    for name, path in entries.items():
        raw = read_toml(path)
        numbers = [r for r in raw.get("reproduces", []) if r.get("seed") == seed]
        if raw.get("seed_report") != seed and not numbers:
            continue
        if raw.get("kind") == "study":
            rows.append((name, "study", "", ""))
            continue
        runs = [r for r in index.list(name) if r.status == "finished"]
        for r in numbers or [{"what": raw.get("description", ""), "metric": raw.get("expect", {}).get("metric", ""),
                              "value": None}]:
            metric = r["metric"]
            found = [x.summary[metric] for x in runs if isinstance(x.summary.get(metric), (int, float))]
            lower = r.get("higher_is_better") is False
            best = (min if lower else max)(found) if found else None
            bar = f"{metric} {'<=' if lower else '>='} {r['value']:.4g}" if r.get("value") is not None else metric
            rows.append((name, r["what"][:60], bar, f"best {best:.4f} ({len(found)} run(s))" if found else "not run"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, [*widths, 0])).rstrip())
    return 0


def cmd_run(args) -> int:
    import os

    if not args.no_deps and int(os.environ.get("WORLD_SIZE", "1")) == 1:  # not in each torchrun rank
        bring_dependencies(args)
    if args.folds is not None:
        return cmd_run_folds(args)
    if args.nproc != 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # --nproc N, or under torchrun
        from practicum.train.launch import cmd_run_distributed

        return cmd_run_distributed(args)
    from practicum.config import load_experiment
    from practicum.execute import run_config
    from practicum.sweeps import is_study

    if is_study(args.experiment):
        if args.override or args.seed is not None:
            raise UsageError(f"{args.experiment} is a study: use 'practicum sweep' to change it")
        args.grid, args.seeds, args.workers, args.name = [], None, 1, None
        return cmd_sweep(args)

    cfg = load_experiment(args.experiment, args.override, seed=args.seed, quick=args.quick)
    try:
        run_config(cfg, force=args.force, report=not args.no_report)
    except KeyboardInterrupt:
        return 130
    return 0


def bring_dependencies(args) -> None:
    """The runs the entry reads (deps.py), run or reused first, said in one line on stderr."""
    from practicum import deps
    from practicum.config import load_experiment
    from practicum.sweeps import is_study

    if is_study(args.experiment):
        return
    cfg = load_experiment(args.experiment, args.override, seed=args.seed, quick=args.quick)
    deps.bring(cfg, say=lambda msg: print(msg, file=sys.stderr))


def cmd_run_folds(args) -> int:
    """``run EXP --folds K``: the K fold runs (each an ordinary run, reused by identity) as a study
    record ``<name>-cv<K>`` and its report: mean ± std over the folds of the validation metrics."""
    import hashlib

    from practicum import sweeps
    from practicum.config import load_experiment
    from practicum.report.study import write_study_report

    if args.nproc != 1 or args.force or sweeps.is_study(args.experiment):
        what = "--nproc" if args.nproc != 1 else "--force" if args.force else "a study (declare folds = K in it)"
        raise UsageError(f"run --folds: not with {what}; the folds are ordinary runs, reused by identity")
    base = load_experiment(args.experiment, args.override, seed=args.seed, quick=args.quick)
    name = f"{base.name}-cv{args.folds}" + ("-quick" if args.quick else "")
    if args.override or args.seed is not None:  # another variant: its own record, not the plain one's
        name += "-" + hashlib.sha256(repr((args.override, args.seed)).encode()).hexdigest()[:6]
    plan = sweeps.plan(args.experiment, {}, 1, overrides=args.override, quick=args.quick, name=name,
                       folds=args.folds, seed=args.seed)
    counts = sweeps.run_plan(plan, log=lambda msg: print(msg, file=sys.stderr))
    print(f"{plan.name}: {counts['total']} fold runs: {counts['skipped']} already finished, "
          f"{counts['ran']} ran, {counts['failed']} failed")
    if not args.no_report:
        md, _, results = write_study_report(sweeps.studies_dir() / plan.name)
        print(f"report: {md}\nresults: {results}")
        print(results.read_text(encoding="utf-8"), end="")
    return 1 if counts["failed"] else 0


def cmd_sweep(args) -> int:
    from practicum import sweeps
    from practicum.report.study import write_study_report
    from practicum.store import Index

    if sweeps.is_study(args.experiment):
        if args.grid or args.override:
            raise UsageError(f"{args.experiment} is a study file: its grid is declared in it")
        plan = sweeps.plan_study(args.experiment, seeds=args.seeds, quick=args.quick)
    else:
        if not args.grid:
            raise UsageError("sweep: give at least one --grid KEY=V1,V2 (or a study file)")
        plan = sweeps.plan(args.experiment, sweeps.parse_grid(args.grid), args.seeds or 1,
                          overrides=args.override, quick=args.quick, name=args.name)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    executor, resources = sweep_executor(args)
    bar = None
    if executor == "local":
        from practicum import deps, progress
        from practicum.config import load_experiment

        if plan.trials and not getattr(args, "no_deps", False):  # what the trials read, once for all
            first = plan.trials[0]
            deps.bring(load_experiment(plan.experiment, first.overrides, seed=first.seed, quick=plan.quick), say=log)
        bar = progress.for_sweep(plan, Index(), args.workers)  # runs done of all, elapsed, ETA
        log = bar.wrap(log)
    counts = sweeps.run_plan(plan, workers=args.workers, log=log, executor=executor, resources=resources,
                             progress=bar)
    if bar is not None:
        bar.close()
    study_dir = sweeps.studies_dir() / plan.name
    index = Index()
    export_trials(plan, index, study_dir / "tb")
    md, html, results = write_study_report(study_dir, index)
    print(f"{plan.name}: {counts['total']} trials: {counts['skipped']} already finished, "
          f"{counts['ran']} ran, {counts['failed']} failed")
    if counts.get("queued"):
        print(f"{plan.name}: {counts['queued']} trials queued or running; run the same command again "
              "to collect them (nothing in flight is submitted twice)")
    print(f"report: {md}\nresults: {results}")
    print(results.read_text(encoding="utf-8"), end="")
    return 1 if counts["failed"] else 0


def sweep_executor(args):
    """The sweep's executor and, for a cluster one, its resources (cluster.Resources)."""
    executor = getattr(args, "executor", "local")  # `practicum run STUDY` comes here without the flags
    if executor == "local":
        given = [flag for flag, value in (("--partition", getattr(args, "partition", None)),
                                          ("--gpus-per-trial", getattr(args, "gpus_per_trial", 0)),
                                          ("--cpus-per-trial", getattr(args, "cpus_per_trial", None)),
                                          ("--max-parallel", getattr(args, "max_parallel", None)),
                                          ("--no-wait", getattr(args, "no_wait", False))) if value]
        if given:
            raise UsageError(f"sweep: {', '.join(given)} need --executor slurm (or submitit-local)")
        return executor, None
    if args.workers != 1:
        raise UsageError("sweep: --workers is for --executor local; a cluster sweep takes --max-parallel")
    from practicum.cluster import Resources, parse_time

    return executor, Resources(partition=args.partition, gpus_per_trial=args.gpus_per_trial,
                               cpus_per_trial=args.cpus_per_trial, time_min=parse_time(args.time),
                               max_parallel=args.max_parallel, wait=not args.no_wait)


def export_trials(plan, index, tb_dir) -> None:
    """Every finished trial in TensorBoard's HParams view (scalars + final metrics)."""
    from practicum.report.tensorboard import export_run

    for t in plan.trials:
        done = [r for r in index.by_hash(t.config_hash) if r.status == "finished"]
        if done:
            export_run(done[-1], {**t.point, "seed": t.seed}, tb_dir)


def cmd_reproduce(args) -> int:
    from practicum import reproduce
    from practicum.report.reproduction import write_reproduction_report
    from practicum.store import Index

    seeds = reproduce.SEEDS if args.seed == "all" else (args.seed,)
    for seed in seeds:
        index = Index()
        plan = reproduce.plan(seed, quick=args.quick, index=index, seeds=args.seeds)
        if args.plan:
            reproduce.estimate(plan, index, probe=not args.no_probe)
            print(reproduce.format_plan(plan))
            continue
        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        counts = reproduce.run(plan, workers=args.workers, log=log)
        index.refresh()  # the runs just finished are in their folders, not yet in this cache
        plan = reproduce.plan(seed, quick=args.quick, index=index, seeds=args.seeds)  # what is finished now
        out = reproduce.reproductions_dir() / (seed + ("-quick" if args.quick else ""))
        md, html = write_reproduction_report(plan, out, index)
        print(f"reproduction {seed}: {counts['total']} runs, {counts['skipped']} already finished, {counts['ran']} ran, "
              f"{counts['failed']} failed\nreport: {md}\n        {html}")
        if counts["failed"]:
            return 1
    return 0


def cmd_compare(args) -> int:
    from practicum.report import compare
    from practicum.store import Index, home

    index = Index()
    records = [index.find(ref) for ref in args.runs]
    out = Path(args.out) if args.out else home() / "comparisons" / "-vs-".join(r.id for r in records)[:200]
    c = compare.compare(records, all_keys=args.all_keys)
    md, _ = compare.write_compare_report(c, out)
    print(compare.text(c, all_keys=args.all_keys))
    print(f"report: {md}")
    return 0


def cmd_site(args) -> int:
    from practicum.report.site import build

    page = build(Path(args.out) if args.out else None)
    print(page)
    return 0


RUN_COLUMNS = ("id", "experiment", "status", "started", "duration", "headline")


def cmd_runs(args) -> int:
    from practicum.store import Index

    index = Index()
    if args.reindex:
        print(f"{index.path}: rebuilt from {index.reindex()} run directories in {index.root}", file=sys.stderr)
    records = index.list(args.experiment)
    if args.json:
        print(json.dumps([r.as_json() for r in records], indent=2))
        return 0
    if args.csv:
        keys = sorted({k for r in records for k in r.summary})
        writer = csv.writer(sys.stdout)
        writer.writerow([*RUN_COLUMNS[:-1], "config_hash", "dir", *keys])
        for r in records:
            writer.writerow([r.id, r.experiment, r.status, _when(r.started), _secs(r.duration),
                             r.config_hash, r.dir, *(r.summary.get(k, "") for k in keys)])
        return 0
    rows = [(r.id, r.experiment, r.status, _when(r.started), _secs(r.duration), r.headline or "")
            for r in records]
    widths = [max(len(str(x)) for x in col) for col in zip(RUN_COLUMNS, *rows)]
    for row in [RUN_COLUMNS, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    return 0


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _secs(d: float | None) -> str:
    return f"{d:.1f}s" if d is not None else ""


def cmd_report(args) -> int:
    from practicum.report import write_run_report
    from practicum.report.study import write_study_report
    from practicum.store import Index
    from practicum.sweeps import studies_dir

    study = studies_dir() / args.run
    if (study / "study.json").exists():
        md, html, _ = write_study_report(study)
    else:
        md, html = write_run_report(Index().find(args.run))
    print(md)
    print(html)
    return 0


def cmd_new(args) -> int:
    from practicum import fileio
    from practicum.config import load_experiment
    from practicum.template import experiment_template

    path = Path(args.out or f"{args.name}.toml")
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists: choose another name or --out, or --force to overwrite it")
    cfg = load_experiment(args.source)
    fileio.write_text(path, experiment_template(cfg, args.name, args.source))
    print(f"{path}: {args.name}, from {args.source}; run it with: practicum run {path}")
    return 0


def cmd_export(args) -> int:
    from practicum.export import export

    for path in export(args.run, args.format, Path(args.out)):
        print(path)
    return 0


def cmd_data(args) -> int:
    from practicum.data import cache

    if args.action == "list":
        for name in cache.dataset_names():
            info = cache.dataset_info(name)
            files = info.files
            total = sum(f.size for f in files)
            print(f"{name}: {info.description} ({len(files)} files, {total:,} bytes)")
            shown = files if len(files) <= 10 else files[:5]
            for f in shown:
                print(f"  {f.path}  {f.size:>12,}  sha256:{f.sha256}")
            if len(files) > len(shown):
                print(f"  ... and {len(files) - len(shown)} more")
        return 0
    if args.action == "fetch":
        path = cache.fetch(args.name)
        print(f"{args.name}: {path}")
        return 0
    rows = cache.verify(args.name)
    bad = 0
    for dataset, file, status in rows:
        print(f"{status:<10} {dataset}/{file}")
        bad += status != "ok"
    if bad:
        raise PracticumError(f"{bad} of {len(rows)} files are missing or bad (see above)")
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "sweep": cmd_sweep, "reproduce": cmd_reproduce, "compare": cmd_compare, "runs": cmd_runs,
            "report": cmd_report, "new": cmd_new, "export": cmd_export, "data": cmd_data, "site": cmd_site}


def refresh_site(args) -> None:
    """After a run, sweep or reproduction: bring <runs>/site up to date (quietly; a failure is a
    warning, never the command's). Not for --no-site, --plan, a DDP rank other than 0 or a probe."""
    import os

    if (args.command not in SITE_COMMANDS or getattr(args, "no_site", False) or getattr(args, "plan", False)
            or int(os.environ.get("RANK", "0")) != 0 or os.environ.get("PRACTICUM_PROBE_STEPS")):
        return
    from practicum.report.site import refresh

    refresh()


def main(argv: list[str] | None = None) -> int:
    code = run_command(argv)
    ddp = sys.modules.get("practicum.train.ddp")
    if ddp is not None and ddp.joined:
        ddp.exit_rank(code)  # a DDP rank: no interpreter finalization (see exit_rank)
    return code


def run_command(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    from practicum.store import set_invocation

    set_invocation(argv)
    try:
        args = build_parser().parse_args(argv)
        try:
            code = COMMANDS[args.command](args)
        finally:  # a failed run is recorded too: show it (before the error line, which stays last)
            if not isinstance(sys.exc_info()[1], KeyboardInterrupt):
                refresh_site(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except BrokenPipeError:  # `practicum list | head`: the reader left, which is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except PracticumError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unexpected failure: still one line unless --debug
        if debug:
            raise
        print(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1
