"""Your own model, named where a preset would be.

    [model]
    name = "my_nets.py:TinyNet"        # a file, relative to the experiment file (or the working directory)
    name = "mypackage.nets:TinyNet"     # an importable module
    options = { width = 16 }            # keyword arguments of its constructor

From Python a class or an instance is passed directly (``practicum.run("mnist-lenet", model=TinyNet)``);
it is registered here under a ``python:`` name that lives as long as the process.

The contract is the practical's. An image classifier's is a preset's: the constructor takes
``num_classes``, ``in_channels`` and ``image_size`` (and the options); ``forward`` maps a float batch
(B, C, H, W) to logits (B, K). A language model (practicals/language_model.py) and a text classifier
(practicals/sentiment.py) state theirs in their docstrings.
The model's source joins the run's identity (the file's bytes, the module's file, or the class's
source text; an instance adds its initial weights), so editing the model makes a new run.
Every mistake is a ValueError with one line naming the file and what is wrong; the config loader
adds the experiment file and the key. Before a run is claimed the practical builds the model and
gives it one forward pass on a dummy batch (``check_build``): a constructor or forward that raises
is a UsageError naming the file, the class and the exception, and no run exists.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import linecache
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from practicum.errors import UsageError
from practicum.registry import nearest

PYTHON_PREFIX = "python:"


@dataclass
class UserModel:
    name: str  # the normalised name: absolute file path, module, or python:<qualname>#<hash>
    target: Any  # a class, or an instance (copied before each build)
    source_sha256: str
    where: str  # for messages: the file or module it came from

    @property
    def cls(self) -> type:
        return self.target if isinstance(self.target, type) else type(self.target)

    def check_options(self, contract=("num_classes", "in_channels", "image_size"), key: str = "model.options",
                      methods: tuple[str, ...] = (), **kwargs) -> None:
        """The constructor accepts these keyword arguments (without building anything); the class
        has the ``methods`` the practical calls. ``contract``: the arguments the practical passes."""
        for method in methods:
            if not callable(getattr(self.cls, method, None)):
                raise ValueError(f"{self.where}: {self.cls.__name__} has no method {method}() (the practical calls it)")
        if not isinstance(self.target, type):
            if set(kwargs) - set(contract):
                raise ValueError(f"{key}: {self.where}: an instance takes no options")
            return
        try:
            inspect.signature(self.target).bind(**kwargs)
        except TypeError as e:
            params = ", ".join(p for p in inspect.signature(self.target).parameters if p != "self")
            raise ValueError(f"{key}: {self.where}: {self.cls.__name__}({params}) rejects "
                             f"({', '.join(f'{k}=' for k in kwargs)}): {e}") from None

    def build(self, **kwargs):
        if not isinstance(self.target, type):
            return copy.deepcopy(self.target)
        return self.target(**kwargs)

    def check_build(self, kwargs: dict, inputs: tuple | None = None) -> None:
        """Build the model with ``kwargs`` and, given ``inputs`` (a dummy batch of the practical's
        shape), run one forward pass, without touching any random state. Whatever the user's code
        raises becomes one UsageError line: ``my_nets.py: class Net: __init__ raised RuntimeError: boom
        (line 7)``. Called before the run is claimed, so a broken model leaves no run behind."""
        import random

        import numpy as np
        import torch

        stage = "__init__" if isinstance(self.target, type) else "copying the instance"
        states = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                model = self.build(**kwargs)
                if inputs is not None:
                    shapes = ", ".join(str(tuple(x.shape)) if hasattr(x, "shape") else repr(x) for x in inputs)
                    stage = f"forward of a dummy batch {shapes}"
                    model(*inputs)
        except Exception as e:  # noqa: BLE001 - whatever the user's code raises, said in one line
            raise UsageError(f"{self.where}: class {self.cls.__name__}: {stage} raised {_one_line(e)}"
                             f"{_line_in(e, self.cls)}") from None
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])

    def identity(self) -> dict:
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}", "source_sha256": self.source_sha256}


REGISTERED: dict[str, UserModel] = {}


def is_user_model(name: str) -> bool:
    return ":" in name


def short_name(name: str) -> str:
    """What a report calls a model: a preset's name, or your class's (``/x/my_nets.py:TinyNet`` -> ``TinyNet``)."""
    if not is_user_model(name):
        return name
    return name.rsplit(":", 1)[1].split("#")[0].rsplit(".", 1)[-1]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_line(e: BaseException) -> str:
    """``Type: message``, the message's first line (torch's can run to many)."""
    lines = [line for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0].strip()}" if lines else type(e).__name__


def _line_in(e: BaseException, source) -> str:
    """`` (line N)``: the deepest line of the traceback in ``source`` (a file, or a class's file)."""
    if not isinstance(source, (str, Path)):
        try:
            source = inspect.getsourcefile(source)
        except TypeError:
            return ""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if source and Path(f.filename) == Path(source)]
    return f" (line {lines[-1]})" if lines else ""


def _attribute(module, attr: str, where: str):
    if not hasattr(module, attr):
        names = [n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")]
        raise ValueError(f"{where} has no '{attr}'{nearest(attr, names)}"
                         + (f"; it defines: {', '.join(sorted(names))}" if names else ""))
    return getattr(module, attr)


_LOADED: dict[tuple[str, str, str], UserModel] = {}  # (path, attr, sha256) -> loaded: one import per content


def _from_file(path: Path, attr: str) -> UserModel:
    data = path.read_bytes()
    key = (str(path), attr, _sha(data))
    if key not in _LOADED:
        _LOADED[key] = _import_file(path, attr, data)
    return _LOADED[key]


def _import_file(path: Path, attr: str, data: bytes) -> UserModel:
    module_name = f"practicum_user_{_sha(str(path).encode())[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the user's code raises, said in one line
        raise ValueError(f"importing {path} failed: {_one_line(e)}{_line_in(e, path)}; "
                         f"class {attr} not reached") from None
    finally:
        sys.path.remove(str(path.parent))
    sys.modules[module_name] = module
    return UserModel(f"{path}:{attr}", _attribute(module, attr, str(path)), _sha(data), str(path))


def _from_module(module_name: str, attr: str) -> UserModel:
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"importing module '{module_name}' failed: {_one_line(e)}; class {attr} not reached") from None
    source = inspect.getsourcefile(module)
    data = Path(source).read_bytes() if source else repr(sorted(vars(module))).encode()
    return UserModel(f"{module_name}:{attr}", _attribute(module, attr, f"module '{module_name}'"), _sha(data),
                     f"module '{module_name}'")


def resolve(name: str, base_dirs: list[Path]) -> UserModel:
    """The model ``name`` stands for: ``file.py:Class``, ``package.module:Class`` or a registered
    ``python:`` name. ValueError (one line) when it cannot be found or imported."""
    if name.startswith(PYTHON_PREFIX):
        if name not in REGISTERED:
            raise ValueError(f"model '{name}' was passed from Python and exists only in that process; "
                             "name a file ('my_nets.py:TinyNet') to run it elsewhere")
        return REGISTERED[name]
    location, _, attr = name.rpartition(":")
    if not location or not attr:
        raise ValueError(f"'{name}': expected 'file.py:ClassName' or 'package.module:ClassName'")
    if location.endswith(".py"):
        candidates = [Path(location)] if Path(location).is_absolute() else [d / location for d in base_dirs]
        found = next((p.resolve() for p in candidates if p.is_file()), None)
        if found is None:
            where = ", ".join(str(d) for d in base_dirs) if not Path(location).is_absolute() else location
            raise ValueError(f"model file '{location}' not found (looked in {where})")
        return _from_file(found, attr)
    return _from_module(location, attr)


def class_source(cls: type) -> str:
    """The source text of ``cls``, also for a class typed into a notebook cell (where
    ``inspect.getsource`` finds no file: the cell's code is in linecache under its own name)."""
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        pass
    for member in vars(cls).values():
        code = getattr(member, "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        starts = [i for i, line in enumerate(lines[: code.co_firstlineno])
                  if line.lstrip().startswith(f"class {cls.__name__}")]
        if starts:  # the nearest class statement above one of its methods
            return "".join(inspect.getblock(lines[starts[-1]:]))
    raise ValueError(f"cannot find the source of class {cls.__qualname__}: define it in a file or a cell")


def register(obj) -> str:
    """A class or an instance passed from Python: its ``python:`` name (source hash included)."""
    import torch

    cls = obj if isinstance(obj, type) else type(obj)
    if not (isinstance(obj, torch.nn.Module) or (isinstance(obj, type) and issubclass(obj, torch.nn.Module))):
        raise ValueError(f"model: expected a torch.nn.Module class or instance, got {obj!r}")
    digest = hashlib.sha256(class_source(cls).encode())
    if not isinstance(obj, type):
        for key, tensor in obj.state_dict().items():  # an instance: its initial weights too
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        obj = copy.deepcopy(obj)
    source = digest.hexdigest()
    name = f"{PYTHON_PREFIX}{cls.__module__}.{cls.__qualname__}#{source[:12]}"
    REGISTERED[name] = UserModel(name, obj, source, f"{cls.__qualname__} (from Python)")
    return name
