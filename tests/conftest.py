"""Shared pytest fixtures and markers."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONLL_DIR = SHARED_DATA / "conll2003"


def pytest_configure(config):
    config.addinivalue_line("markers", "conll: needs the real CoNLL-2003 files in ../shared (skipped when absent)")


@pytest.fixture
def conll_dir():
    if not (CONLL_DIR / "train.txt").exists():
        pytest.skip("../shared/data/conll2003 is absent")
    return CONLL_DIR
