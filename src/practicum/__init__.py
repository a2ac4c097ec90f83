"""practicum: deep-learning practicals as one recorded, reproducible, reported command each.

From Python (the same behaviour as the CLI; see practicum/api.py)::

    import practicum
    run = practicum.run("mnist-lenet", overrides={"optim.lr": 0.05})
    run.summary, run.metrics, run.figures, run.report()
    practicum.runs(), practicum.load(run_id), practicum.sweep("study-mnist-optimizers")
    practicum.compare(a, b).config       # the config keys that differ, as a DataFrame

``import practicum`` stays light: torch and pandas load on first use.
"""

__version__ = "0.1.0"

from practicum.errors import PracticumError, UsageError  # noqa: E402

_API = ("run", "runs", "load", "sweep", "load_study", "configure", "compare", "site", "RunResult", "StudyResult",
        "Report")
__all__ = ["PracticumError", "UsageError", "Diverged", *_API]


def __getattr__(name: str):
    if name in _API:
        from practicum import api

        return getattr(api, name)
    if name == "Diverged":
        from practicum.train.loop import Diverged

        return Diverged
    raise AttributeError(f"module 'practicum' has no attribute '{name}'")
