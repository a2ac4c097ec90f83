"""One bar over the runs of a sweep or a reproduction (issue 27, progress.py): runs done of the
total, elapsed time, and an ETA from the plan's estimates, corrected as runs finish."""

from __future__ import annotations

import pytest

from practicum import progress


def test_the_overall_bar_corrects_its_eta_as_runs_finish(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: clock[0])
    bar = progress.Overall("study", 5, [("a", 10.0), ("b", 10.0), ("c", 10.0), ("d", None)], disable=True)
    assert bar.n == 1 and bar.eta() == pytest.approx(30 + 10)  # one done already; d: the mean estimate
    clock[0] += 20  # "a" took twice its estimate: the rest will too
    bar.done("a")
    assert bar.n == 2 and bar.eta() == pytest.approx(2 * 20 + 20)
    bar.done("b"), bar.done("c"), bar.done("d")
    assert bar.n == 5 and bar.eta() == 0


def test_a_sweep_shows_one_bar_over_its_trials(cli, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)  # as in a terminal (pytest captures stderr)
    code, _, err = cli("sweep", "quickstart", "--quick", "--grid", "optim.lr=0.1,0.3")
    assert code == 0, err
    assert "sweep-numpy-halfmoon: 0/2 runs" in err and "sweep-numpy-halfmoon: 2/2 runs" in err
    assert "elapsed" in err and "ETA" in err
    code, _, err = cli("sweep", "quickstart", "--quick", "--grid", "optim.lr=0.1,0.3,0.5")
    # the two finished trials count as done from the start
    assert code == 0 and "sweep-numpy-halfmoon: 2/3 runs" in err and "3/3 runs" in err
