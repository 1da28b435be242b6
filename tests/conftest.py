"""Shared fixtures. Real data sets are read from ../shared/data (see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reads the user's cache or AEKIT_DATA, or writes outside its tmp folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEKIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"the real data sets are not at {SHARED_DATA}")
    return SHARED_DATA
