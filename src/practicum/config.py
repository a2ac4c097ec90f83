"""Experiment files: strict, typed, declarative TOML.

An experiment file names a ``task`` (the practical's runner) and holds the sections that task's
schema declares. Loading validates strictly: an unknown key is an error naming the file, the key and
the nearest valid key (a key as Keras, Lightning or Hugging Face spell it, ``learning_rate``, or one
in the wrong section, ``data.batch_size``, points to practicum's: ``optim.lr``, ``optim.batch_size``);
a wrong type names the expected type. ``-o a.b=value`` overrides any field by
dotted path before validation, so overrides are checked exactly like the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from practicum.errors import UsageError
from practicum.registry import nearest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def resolved(self) -> dict:
        """What a name in this section stands for outside the file (e.g. a model preset's table):
        part of a run's identity, so changing the definition behind a name is a new experiment."""
        return {}


class Measured(Section):
    """What the full entry measured here, recorded next to its bar (a slow test holds it to the bar)."""

    value: float = Field(description="mean over the seeds")
    std: float | None = Field(None, description="sample standard deviation over the seeds (n > 1)")
    n: int = Field(1, gt=0, description="seeds")
    date: str = Field(description="when, YYYY-MM-DD")
    seconds: float | None = Field(None, description="wall time of one run (idle machine unless the note says)")
    note: str = ""


class Expect(Section):
    """The band a catalog entry promises, checked by the tests (slow ones run the full entry)."""

    metric: str = "test/accuracy"
    min: float | None = None
    max: float | None = None
    quick_min: float | None = Field(None, description="lower bound for the --quick form")
    measured: Measured | None = Field(None, description="the full entry's recorded result")


class Reproduces(Section):
    """A number of a seed report (or a published reference) this entry reproduces."""

    seed: str = Field(description="seed report: '000', '002', '003' or '004'")
    section: str = Field(description="the report's section, e.g. '3' (seed order)")
    what: str = Field(description="the row as the report states it, e.g. 'LeNet-5, 10 epochs'")
    metric: str = Field("test/accuracy", description="our summary metric compared with it")
    value: float = Field(description="the reported number (the top of a reported range)")
    range: tuple[float, float] | None = Field(None, description="a reported range, e.g. (0.98, 0.992)")
    source: str = Field(description="where the number comes from: 'seed 000 §3', 'D2L 0.17 (REFERENCE-NUMBERS.md 1b)'")
    seeds: int = Field(3, gt=0, description="seeds the reproduction runs (1 for rows that train for long)")
    higher_is_better: bool = True


class Experiment(Section):
    """Fields every experiment file has; each task's schema subclasses this with its sections.

    ``version`` is the practical's: bump it when a change of code alters what an unchanged config
    computes, so a new run is made instead of an old result being passed off as the new one's.
    """

    version: typing.ClassVar[int] = 1

    name: str
    task: str
    description: str = ""
    seed_report: str | None = Field(None, description="seed report this entry reproduces, e.g. '000'")
    seed: int = 0
    expect: Expect = Expect()
    quick: dict[str, Any] = Field(
        default_factory=dict, description="dotted overrides applied by --quick (small, fast form)"
    )
    reproduces: list[Reproduces] = Field(default_factory=list, description="the seed numbers this entry reproduces")

    # Fields that describe an entry but do not change what it computes: left out of its identity.
    _meta_fields = {"description", "seed_report", "expect", "quick", "reproduces"}

    def settings(self) -> dict:
        """The fields that change what a run computes: the file without its meta fields."""
        return self.model_dump(mode="json", exclude=self._meta_fields)

    def hparams(self) -> dict[str, Any]:
        """The settings as flat, non-empty ``section.key`` values: a run's TensorBoard HParams."""
        return {k: v for k, v in flatten(self.settings()).items() if v is not None}

    def identity(self) -> dict:
        """What makes two runs the same: the settings that differ from the schema's defaults (so
        adding a field with a default keeps every earlier run's identity), what the names in them
        stand for (``Section.resolved``), and the practical's version. A default that changes
        value must come with a new ``version`` (tests/test_identity.py holds the defaults to it)."""
        ident = self.model_dump(mode="json", exclude=self._meta_fields, exclude_defaults=True)
        ident.update(name=self.name, task=self.task, seed=self.seed)
        for key in type(self).model_fields:
            section = getattr(self, key)
            if isinstance(section, Section) and (resolved := section.resolved()):
                ident.setdefault(key, {})["(resolved)"] = resolved
        ident["(version)"] = self.version
        return ident

    def config_hash(self) -> str:
        """A trial's identity: hash of the resolved config, seed included."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Locating and reading files


def catalog_dir() -> Path:
    return Path(str(resources.files("practicum") / "experiments"))


# Other names for catalog entries: ``practicum run quickstart`` is the half-moons practical.
ALIASES = {"quickstart": "numpy-halfmoon"}


def catalog() -> dict[str, Path]:
    """Catalog name -> experiment file, for every file shipped in ``practicum/experiments``."""
    return {p.stem: p for p in sorted(catalog_dir().glob("*.toml"))}


def resolve_path(spec: str) -> Path:
    """A catalog name or a path to an experiment file."""
    path = Path(spec)
    if path.suffix == ".toml" or path.is_file():  # a folder named like an entry (a run store's) is not a file
        if not path.is_file():
            raise UsageError(f"experiment file not found: {spec}")
        return path
    entries = catalog()
    spec = ALIASES.get(spec, spec)
    if spec not in entries:
        raise UsageError(
            f"unknown experiment '{spec}'{nearest(spec, entries)}: "
            "give a catalog name (see 'practicum list') or a path to a .toml file"
        )
    return entries[spec]


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None


# ---------------------------------------------------------------------------------------------
# Overrides


def parse_value(text: str) -> Any:
    """A TOML scalar or list (``0.05``, ``[512, 256]``, ``true``, ``"x"``); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"override '{item}': expected KEY=VALUE, e.g. optim.lr=0.05")
    return key.strip(), parse_value(value.strip())


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"data": {"limit": 5}}`` -> ``{"data.limit": 5}`` (TOML's dotted keys nest tables)."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"override '{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------------
# Validation with readable errors


def _unwrap_model(annotation) -> type[BaseModel] | None:
    """The BaseModel class inside ``X``, ``X | None`` or ``Optional[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found:
                return found
    return None


def _field_at(schema: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, Any]:
    """(model owning the last key of ``loc``, that field's annotation) by walking the schema."""
    model, annotation = schema, None
    for i, part in enumerate(loc):
        if model is None or not isinstance(part, str):
            return None, None
        field = model.model_fields.get(part)
        if field is None:
            return (model, None) if i == len(loc) - 1 else (None, None)
        annotation = field.annotation
        if i < len(loc) - 1:
            model = _unwrap_model(annotation)
    return model, annotation


def _describe_type(annotation) -> str:
    if annotation is None:
        return "a value"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return f"a list of {_describe_type(args[0])}" if args else "a list"
    if origin is dict:
        return "a table"
    if annotation is type(None):
        return "nothing (omit it)"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a table"
    return getattr(annotation, "__name__", str(annotation))


# Keys as other frameworks (Keras, Lightning, Hugging Face, torch scripts) spell them, and
# practicum's own keys written in the wrong section: where practicum keeps each (the first of
# these keys that the practical's schema has; the NumPy MLP's weight decay is optim.l2).
FOREIGN_KEYS = {
    **dict.fromkeys(["lr", "learning_rate", "lr_rate", "base_lr", "init_lr", "initial_lr"], ("optim.lr",)),
    **dict.fromkeys(["batch_size", "batchsize", "batch", "bs", "train_batch_size", "per_device_train_batch_size"],
                    ("optim.batch_size",)),
    **dict.fromkeys(["weight_decay", "wd", "l2", "weight_decay_rate"], ("optim.weight_decay", "optim.l2")),
    **dict.fromkeys(["momentum"], ("optim.momentum",)),
    **dict.fromkeys(["max_grad_norm", "gradient_clip_val", "clipnorm", "clip_grad_norm"], ("optim.grad_clip",)),
    **dict.fromkeys(["epsilon", "adam_epsilon"], ("optim.eps",)),
    **dict.fromkeys(["beta_1", "beta_2", "adam_beta1", "adam_beta2"], ("optim.betas",)),
    **dict.fromkeys(["optimizer"], ("optim.name",)),
    **dict.fromkeys(["scheduler", "lr_scheduler", "lr_scheduler_type"], ("optim.schedule.name",)),
    **dict.fromkeys(["epochs", "epoch", "num_epochs", "max_epochs", "n_epochs", "nb_epoch", "num_train_epochs"],
                    ("train.epochs",)),
    **dict.fromkeys(["per_device_eval_batch_size", "val_batch_size", "test_batch_size"], ("train.eval_batch_size",)),
    **dict.fromkeys(["patience", "early_stopping_patience"], ("train.early_stop_patience",)),
    **dict.fromkeys(["logging_steps", "log_every_n_steps"], ("train.log_steps",)),
    **dict.fromkeys(["save_steps"], ("train.checkpoint_steps",)),
    **dict.fromkeys(["accelerator"], ("train.device",)),
    **dict.fromkeys(["fp16", "bf16", "amp", "mixed_precision"], ("train.precision",)),
    **dict.fromkeys(["num_threads"], ("train.threads",)),
    **dict.fromkeys(["random_seed", "manual_seed"], ("seed",)),
}


def _places(model: type[BaseModel], leaf: str, prefix: str = "") -> list[str]:
    """Every dotted key of the schema ending in ``leaf``, nested sections included."""
    found = []
    for name, field in model.model_fields.items():
        if name == leaf:
            found.append(prefix + name)
        sub = _unwrap_model(field.annotation)
        if sub is not None and prefix.count(".") < 4:
            found += _places(sub, leaf, f"{prefix}{name}.")
    return found


def _pointer(schema: type[BaseModel], loc: tuple, owner: type[BaseModel]) -> str:
    """The practicum key an unknown key stands for, or '' (the caller then names the nearest key
    of the same section). A foreign spelling (FOREIGN_KEYS) is this section's key of that name
    when it has one, else the table's; any other key is the one of that name in exactly one
    other section."""
    leaf, section = str(loc[-1]), ".".join(str(p) for p in loc[:-1])
    targets = FOREIGN_KEYS.get(leaf.lower(), ())
    leaves = [t.rsplit(".", 1)[-1] for t in targets]
    for mine in leaves:
        if mine in owner.model_fields:
            return f"{section}.{mine}" if section else mine
    for target, mine in zip(targets, leaves):
        if target in _places(schema, mine):
            return target
    for mine in leaves or [leaf]:
        if len(elsewhere := _places(schema, mine)) == 1:
            return elsewhere[0]
    return ""


def _format_error(schema: type[BaseModel], err: dict) -> str:
    loc = tuple(err["loc"])
    # Pydantic appends the union member or function name in some locs; drop non-field parts.
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        owner, _ = _field_at(schema, loc)
        if owner is None:
            return f"unknown key '{key}'"
        pointer = _pointer(schema, loc, owner)
        if pointer:
            hint = f" (did you mean '{pointer}'?)"
        elif str(loc[-1]).lower() in FOREIGN_KEYS:  # a known concept this practical has no key for
            hint = f" (this practical has no '{FOREIGN_KEYS[str(loc[-1]).lower()][0]}')"
        else:
            hint = nearest(loc[-1], owner.model_fields)
        return f"unknown key '{key}'{hint}"
    if err["type"] == "missing":
        return f"missing required key '{key}'"
    if not loc or err["type"] == "value_error":  # a check across fields: its message says it all
        where = f"key '{key}': " if loc else ""
        return where + err["msg"].removeprefix("Value error, ")
    _, annotation = _field_at(schema, loc)
    got = repr(err.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    return f"key '{key}': expected {_describe_type(annotation)}, got {got} ({err['msg'].lower()})"


def validate(schema: type[Experiment], raw: dict, source: str, base_dir: Path | None = None) -> Experiment:
    """``base_dir``: where relative paths in the file are looked for (the file's folder)."""
    try:
        return schema.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as e:
        messages = [_format_error(schema, err) for err in e.errors()]
        raise UsageError(f"{source}: " + "; ".join(messages)) from None


# ---------------------------------------------------------------------------------------------


def load_raw(spec: str) -> tuple[dict, Path]:
    path = resolve_path(spec)
    return read_toml(path), path


def load_experiment(
    spec: str,
    overrides: list[str] = (),
    seed: int | None = None,
    quick: bool = False,
) -> Experiment:
    """Read, override and validate an experiment. ``spec`` is a catalog name or a file path."""
    from practicum.tasks import task_name, task_schema

    raw, path = load_raw(spec)
    if quick:
        quick_overrides = raw.get("quick", {})
        if not isinstance(quick_overrides, dict):
            raise UsageError(f"{path}: key 'quick': expected a table of dotted overrides")
        for key, value in flatten(quick_overrides).items():
            set_dotted(raw, key, value)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    if seed is not None:
        raw["seed"] = seed
    task = raw.get("task")
    if not isinstance(task, str):
        raise UsageError(f"{path}: missing required key 'task' (the practical to run)")
    try:
        raw["task"] = task_name(task)
        schema = task_schema(raw["task"])
    except UsageError as e:
        raise UsageError(f"{path}: key 'task': {e}") from None
    return validate(schema, raw, str(path), path.parent.resolve())
