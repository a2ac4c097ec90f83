"""``practicum new NAME --from ENTRY``: an experiment file to start from, every field written out.

The file holds the entry's resolved config (defaults included, so nothing is hidden), each field
with its description as a comment, and the entry's quick form. It loads back to the entry's
settings under the new name; a field whose value is unset is written commented out (TOML has no null).
"""

from __future__ import annotations

from pydantic import BaseModel

from practicum.config import Experiment, flatten
from practicum.sweeps import toml_value

SKIPPED = {"expect", "reproduces"}  # the entry's band and seed numbers belong to the catalog, not to your experiment


def comment(field) -> str:
    return f"  # {field.description}" if field.description else ""


def emit_section(model: BaseModel, path: str, lines: list[str]) -> None:
    """``[path]`` with its plain fields, then its sub-sections as ``[path.sub]`` tables."""
    fields = type(model).model_fields
    plain = [k for k in fields if not isinstance(getattr(model, k), BaseModel)]
    subs = [k for k in fields if isinstance(getattr(model, k), BaseModel)]
    if path:
        lines += ["", f"[{path}]"]
    for key in plain:
        value = getattr(model, key)
        if path == "" and key in SKIPPED:
            continue
        dumped = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if isinstance(value, tuple):
            dumped = list(value)
        if dumped is None:
            lines.append(f"# {key} = (unset){comment(fields[key])}")
        elif path == "" and key == "quick":
            continue  # written last, as a table
        else:
            lines.append(f"{key} = {toml_value(dumped)}{comment(fields[key])}")
    for key in subs:
        if path == "" and key in SKIPPED:
            continue
        emit_section(getattr(model, key), f"{path}.{key}" if path else key, lines)


def experiment_template(cfg: Experiment, name: str, source: str) -> str:
    cfg = cfg.model_copy(update={"name": name})
    lines = [f"# Started from '{source}' with 'practicum new {name} --from {source}'.",
             "# Every field is written out at its value; delete what you do not change.",
             "# Run it: practicum run <this file>   (its small form: --quick)"]
    emit_section(cfg, "", lines)
    if cfg.quick:
        lines += ["", "[quick]  # overrides for the seconds-long form (--quick)"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in flatten(cfg.quick).items()]
    return "\n".join(lines) + "\n"


def toml_key(dotted: str) -> str:
    """A dotted override key as a TOML key (bare parts stay bare)."""
    return ".".join(p if p.replace("_", "").replace("-", "").isalnum() else f'"{p}"' for p in dotted.split("."))

