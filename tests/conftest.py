import os
from pathlib import Path

import pytest


def _find_mirror() -> Path | None:
    """shared/datasets: $PRACTICUM_DATA_MIRROR, else next to the repo (/work/main -> /work/shared,
    or a CI clone <ws>/<repo> -> <ws>/shared), else inside it."""
    if os.environ.get("PRACTICUM_DATA_MIRROR"):
        return Path(os.environ["PRACTICUM_DATA_MIRROR"])
    repo = Path(__file__).resolve().parents[1]
    for candidate in (repo.parent / "shared" / "datasets", repo / "shared" / "datasets"):
        if (candidate / "MANIFEST.md").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The real offline mirror of datasets (skips the test when it cannot be found)."""
    mirror = _find_mirror()
    if mirror is None or not mirror.is_dir():
        pytest.skip("dataset mirror not found: set PRACTICUM_DATA_MIRROR to shared/datasets")
    return mirror


@pytest.fixture
def data_env(tmp_path, monkeypatch, data_mirror):
    """An empty cache in tmp_path, the real mirror, and no downloads. Returns the cache path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRACTICUM_DATA_CACHE", str(cache))
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(data_mirror))
    monkeypatch.setenv("PRACTICUM_OFFLINE", "1")
    return cache


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory, data_mirror) -> Path:
    """One data cache for the whole session, so MNIST is copied from the mirror once."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def home(tmp_path, monkeypatch, shared_cache, data_mirror) -> Path:
    """A fresh PRACTICUM_HOME (runs + index) using the shared data cache and the real mirror."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("PRACTICUM_HOME", str(runs))
    monkeypatch.setenv("PRACTICUM_DATA_CACHE", str(shared_cache))
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(data_mirror))
    monkeypatch.setenv("PRACTICUM_OFFLINE", "1")
    return runs


@pytest.fixture
def cli(home, capsys):
    """Run the practicum CLI in-process: returns (exit code, stdout, stderr)."""
    from practicum.cli import main

    def call(*args: str):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run on one torch thread: their tensors are tiny, the CI machine has two cores and
    pytest-xdist runs two workers, and two OpenMP threads per worker only fight for them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
