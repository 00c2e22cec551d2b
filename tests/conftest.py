"""Shared pytest fixtures and markers."""

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONLL_DIR = SHARED_DATA / "conll2003"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "conll: needs the real CoNLL-2003 files in ../shared (skipped when absent)"
    )
    config.addinivalue_line(
        "markers", "services: starts local service processes (Dask, moto S3, Beam job service)"
    )


@pytest.fixture
def conll_dir():
    if not (CONLL_DIR / "train.txt").exists():
        pytest.skip("../shared/data/conll2003 is absent")
    return CONLL_DIR


def _require(*modules: str) -> None:
    """Skips the test when any of `modules` is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[services.DaskCluster]:
    """A 2-worker Dask cluster on 127.0.0.1 (see tests/services.py), shared by the session."""
    _require("distributed", "dask")
    if not (services.VENV_BIN / "dask").exists():
        pytest.skip(f"no dask executable in {services.VENV_BIN}")
    with services.dask_cluster(workers=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3_server() -> Iterator[services.S3Server]:
    """A moto S3 server on 127.0.0.1, with fake AWS credentials exported while it runs."""
    _require("moto", "flask", "flask_cors", "boto3")
    with services.s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def portable_runner() -> Iterator[services.PortableRunner]:
    """Beam's local job service and an external worker pool on 127.0.0.1."""
    _require("apache_beam", "grpc")
    with services.portable_runner() as runner:
        yield runner
