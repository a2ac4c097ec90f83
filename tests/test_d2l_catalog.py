"""Slow: every D2L-path entry of this issue run in full, its headline inside the stated band."""

import json

import pytest

from practicum.config import load_experiment

ENTRIES = ["linreg-scratch", "linreg-torch", "linreg-scratch-3", "linreg-torch-3", "study-optimizers-2d",
           "gan-2d", "style-transfer", "detect-fruit", "dcgan-mnist"]


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # a full seed-row run: up to an hour or two
@pytest.mark.parametrize("name", ENTRIES)
def test_entry_lands_in_its_band(cli, name):
    code, _, err = cli("run", name, "--no-report")
    assert code == 0, err
    (record,) = json.loads(cli("runs", "--json")[1])
    expect = load_experiment(name).expect
    value = record["summary"][expect.metric]
    if expect.min is not None:
        assert value >= expect.min, f"{name}: {expect.metric} = {value} < {expect.min}"
    if expect.max is not None:
        assert value <= expect.max, f"{name}: {expect.metric} = {value} > {expect.max}"
