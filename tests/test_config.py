"""Experiment files: strict validation, readable errors, overrides, identity."""

import pytest

from practicum.config import catalog, load_experiment, parse_value
from practicum.errors import UsageError

GOOD = """
name = "tiny"
task = "numpy_classify"
[optim]
lr = 0.5
[train]
epochs = 3
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_misspelled_key_names_file_key_and_nearest(tmp_path):
    path = write(tmp_path, GOOD.replace("lr = 0.5", "lrr = 0.5"))
    with pytest.raises(UsageError) as e:
        load_experiment(str(path))
    msg = str(e.value)
    assert str(path) in msg and "'optim.lrr'" in msg and "did you mean 'lr'" in msg


def test_misspelled_section_suggests_section(tmp_path):
    path = write(tmp_path, GOOD.replace("[train]", "[trian]"))
    with pytest.raises(UsageError, match=r"unknown key 'trian'.*did you mean 'train'"):
        load_experiment(str(path))


def test_wrong_type_names_expected_type(tmp_path):
    path = write(tmp_path, GOOD.replace("epochs = 3", 'epochs = "many"'))
    with pytest.raises(UsageError, match=r"'train.epochs': expected int, got 'many'"):
        load_experiment(str(path))


def test_literal_field_lists_the_choices(tmp_path):
    path = write(tmp_path, GOOD + 'loss = "hinge"\n')
    with pytest.raises(UsageError, match=r"'train.loss': expected one of 'ce', 'mse', 'svm'"):
        load_experiment(str(path))


def test_unknown_task_and_bad_toml(tmp_path):
    with pytest.raises(UsageError, match=r"key 'task'.*unknown task 'numpy_clasify'.*numpy_mlp"):
        load_experiment(str(write(tmp_path, GOOD.replace("numpy_classify", "numpy_clasify"))))
    with pytest.raises(UsageError, match="not valid TOML"):
        load_experiment(str(write(tmp_path, "name = ", "bad.toml")))


def test_unknown_catalog_name_suggests_nearest():
    with pytest.raises(UsageError, match="did you mean 'numpy-mnist'"):
        load_experiment("numpy-mnsit")


def test_overrides_parse_scalars_lists_and_bare_words(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_experiment(str(path), ["optim.lr=0.05", "model.hidden=[512, 256]",
                                      "model.activation=sigmoid", "optim.nesterov=true",
                                      "optim.momentum=0.9"])
    assert cfg.optim.lr == 0.05 and cfg.model.hidden == [512, 256]
    assert cfg.model.activation == "sigmoid" and cfg.optim.nesterov is True
    assert parse_value("[1,2]") == [1, 2] and parse_value("relu") == "relu"


def test_override_of_unknown_key_is_an_error(tmp_path):
    with pytest.raises(UsageError, match=r"unknown key 'optim.lrate'"):
        load_experiment(str(write(tmp_path, GOOD)), ["optim.lrate=1"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        load_experiment(str(write(tmp_path, GOOD)), ["optim.lr"])


def test_identity_includes_seed_but_not_description(tmp_path):
    path = write(tmp_path, GOOD)
    a = load_experiment(str(path))
    b = load_experiment(str(path), seed=1)
    c = load_experiment(str(write(tmp_path, GOOD + '\n', "c.toml")), ["description=other"])
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == c.config_hash()
    assert len(a.config_hash()) == 16


def test_quick_applies_nested_overrides():
    cfg = load_experiment("numpy-mnist", quick=True)
    full = load_experiment("numpy-mnist")
    assert cfg.data.train_limit == 2000 and full.data.train_limit is None
    assert cfg.model.hidden == full.model.hidden == [1024]


EXPERIMENTS = sorted(n for n, p in catalog().items() if 'kind = "study"' not in p.read_text())
STUDIES = sorted(set(catalog()) - set(EXPERIMENTS))


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_expands_to_valid_trials(name):
    from practicum.sweeps import load_study, plan_study

    study = load_study(name)
    assert study.name == name and study.seed_report and study.grid
    full, quick = plan_study(name), plan_study(name, quick=True)
    points = 1
    for values in study.grid.values():
        points *= len(values)
    assert len(full.trials) == points * study.seeds * max(study.folds, 1) == len(quick.trials)
    assert len({t.config_hash for t in full.trials}) == len(full.trials)
    assert not {t.config_hash for t in full.trials} & {t.config_hash for t in quick.trials}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_catalog_entry_is_valid_and_states_its_seed_and_band(name):
    cfg = load_experiment(name)
    quick = load_experiment(name, quick=True)
    assert cfg.name == name
    assert cfg.seed_report, f"{name} must state the seed report it reproduces"
    assert cfg.expect.min is not None or cfg.expect.max is not None, f"{name} has no expected band"
    assert quick.expect.quick_min is not None, f"{name} has no band for its --quick form"


def test_every_recorded_measurement_is_within_its_entrys_band():
    """An entry's [expect] records what its full run measured (value, n, date): it must clear the
    bar it states (the slow tests rerun the entries and hold the fresh result to the same bar)."""
    from practicum.config import catalog

    for name in catalog():
        try:
            cfg = load_experiment(name)
        except UsageError:
            continue  # a study file
        m = cfg.expect.measured
        if m is None:
            continue
        assert cfg.expect.min is None or m.value >= cfg.expect.min, f"{name}: measured {m.value} < {cfg.expect.min}"
        assert cfg.expect.max is None or m.value <= cfg.expect.max, f"{name}: measured {m.value} > {cfg.expect.max}"
        assert (m.n > 1) == (m.std is not None), f"{name}: a spread needs n > 1"


TORCH_GOOD = """
name = "tiny"
task = "classify"
[optim]
lr = 0.5
"""


@pytest.mark.parametrize("practical, override, key, pointer", [
    ("numpy", "optim.learning_rate=0.1", "optim.learning_rate", "optim.lr"),  # Keras, Lightning, Hugging Face
    ("numpy", "lr_rate=0.1", "lr_rate", "optim.lr"),
    ("numpy", "train.batchsize=32", "train.batchsize", "optim.batch_size"),
    ("numpy", "data.batch_size=32", "data.batch_size", "optim.batch_size"),  # practicum's key, wrong section
    ("numpy", "num_epochs=5", "num_epochs", "train.epochs"),
    ("numpy", "optim.epochs=5", "optim.epochs", "train.epochs"),
    ("numpy", "train.max_epochs=5", "train.max_epochs", "train.epochs"),  # Lightning: same section
    ("numpy", "optim.weight_decay=1e-4", "optim.weight_decay", "optim.l2"),  # the NumPy MLP's name for it
    ("torch", "train.weight_decay=1e-4", "train.weight_decay", "optim.weight_decay"),
    ("torch", "model.wd=1e-4", "model.wd", "optim.weight_decay"),
    ("torch", "train.momentum=0.9", "train.momentum", "optim.momentum"),
    ("torch", "data.eval_steps=5", "data.eval_steps", "train.eval_steps"),  # in exactly one other section
    ("torch", "schedule={ name = 'cosine' }", "schedule", "optim.schedule"),
])
def test_a_foreign_or_misplaced_key_points_to_practicums(tmp_path, practical, override, key, pointer):
    path = write(tmp_path, {"numpy": GOOD, "torch": TORCH_GOOD}[practical])
    with pytest.raises(UsageError) as e:
        load_experiment(str(path), [override])
    assert str(e.value) == f"{path}: unknown key '{key}' (did you mean '{pointer}'?)"


def test_a_foreign_key_in_the_file_names_the_file(tmp_path):
    path = write(tmp_path, GOOD.replace("lr = 0.5", "learning_rate = 0.5"))
    with pytest.raises(UsageError) as e:
        load_experiment(str(path))
    assert str(e.value) == f"{path}: unknown key 'optim.learning_rate' (did you mean 'optim.lr'?)"


def test_a_genuinely_unknown_key_keeps_the_old_message(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(UsageError) as e:
        load_experiment(str(path), ["optim.lrr=1"])
    assert str(e.value) == f"{path}: unknown key 'optim.lrr' (did you mean 'lr'?)"
    with pytest.raises(UsageError) as e:
        load_experiment(str(path), ["optim.frobnicate=1"])
    assert str(e.value) == f"{path}: unknown key 'optim.frobnicate'"


def test_a_foreign_key_the_practical_has_no_place_for_says_so(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(UsageError) as e:  # Lightning's clipping: the NumPy MLP does not clip
        load_experiment(str(path), ["train.gradient_clip_val=1"])
    assert str(e.value) == f"{path}: unknown key 'train.gradient_clip_val' (this practical has no 'optim.grad_clip')"
