"""The runs an experiment reads, brought first: ``practicum run ENTRY`` runs them, or reuses them.

Some entries start from another run's output:

    embed.w2v_run     sentiment: the word2vec embeddings its w2v variants start from (read only
                      when train.variants has a ``*-w2v`` one)
    model.init_from   fine-tuning: the pretrained weights
    compare.lm_run    the n-gram tables: the RNN perplexities shown beside theirs
    eval.beside       CBOW and GloVe: the skip-gram neighbours shown beside theirs

Such a key names a catalog entry (``latest:<entry>``, or for ``model.init_from`` the bare name);
a run id or a directory names a run that exists, and brings nothing to run. The dependency is
the entry at its own seed, in the quick form when the reading run is quick. It runs the way a
reproduction runs its entries: one ordinary trial through ``sweeps.plan`` and ``sweeps.run_plan``,
which reuses a finished run of the same identity (``reproduce.finished``), so a second call runs
nothing. ``--no-deps`` skips all of this: the run then fails as before when what it reads is missing.
"""

from __future__ import annotations

from practicum.config import Experiment, catalog, flatten, load_experiment
from practicum.errors import PracticumError

# key -> when the run reads it (None: always), from the config's flat values
RUN_REFERENCES = {
    "embed.w2v_run": lambda values: any(str(v).endswith("-w2v") for v in values.get("train.variants") or []),
    "model.init_from": None,
    "compare.lm_run": None,
    "eval.beside": None,
}


def is_quick(cfg: Experiment) -> bool:
    """Whether ``cfg`` is its entry's quick form: every ``[quick]`` override holds in it already."""
    if not cfg.quick:
        return False
    values = flatten(cfg.model_dump(mode="json"))
    return all(values.get(k) == v for k, v in flatten(cfg.quick).items())


def dependencies(cfg: Experiment) -> list[tuple[str, str]]:
    """(config key, catalog entry) for every run ``cfg`` reads that a catalog entry makes."""
    values = flatten(cfg.model_dump(mode="json"))
    entries = catalog()
    found = []
    for key, reads in RUN_REFERENCES.items():
        ref = values.get(key)
        if reads is not None and not reads(values):
            continue
        if isinstance(ref, str) and ref.removeprefix("latest:") in entries and ref.removeprefix("latest:") != cfg.name:
            found.append((key, ref.removeprefix("latest:")))
    return found


def bring(cfg: Experiment, say=print, _seen: set | None = None) -> list[str]:
    """Run (or reuse) every dependency of ``cfg``, theirs first; say so in one line before any
    of them runs. Returns the lines said."""
    from practicum import sweeps
    from practicum.reproduce import finished
    from practicum.store import Index

    seen = set() if _seen is None else _seen
    quick = is_quick(cfg)
    todo = [(key, entry) for key, entry in dependencies(cfg) if entry not in seen]
    if not todo:
        return []
    index = Index()
    parts, plans = [], []
    for key, entry in todo:
        seen.add(entry)
        dep = load_experiment(entry, quick=quick)
        done = finished(index, dep.config_hash())
        parts.append(f"{entry} ({key}): " + (f"reusing run {done.id}" if done else
                                             f"running {'its quick form' if quick else 'it'} first"))
        plans.append((key, entry, dep, done))
    line = f"{cfg.name} reads " + "; ".join(parts) + " (--no-deps skips this)"
    say(line)
    said = [line]
    for key, entry, dep, done in plans:
        said += bring(dep, say, seen)  # what the dependency reads comes before it
        if done:
            continue
        plan = sweeps.plan(entry, {}, 1, quick=quick, name=f"deps-{entry}")
        logged: list[str] = []
        counts = sweeps.run_plan(plan, log=logged.append, record=False)
        if counts["failed"]:
            why = logged[-1].split("failed: ", 1)[-1] if logged else "see 'practicum runs'"
            raise PracticumError(f"{entry}, which {cfg.name} reads ({key}), failed: {why} (--no-deps: run "
                                 f"{cfg.name} without it)")
    return said
