"""Shared fixtures. Real files come from ../shared/data beside the project root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(relative: str) -> Path:
    """A file under ../shared/data; fails (not skips) under CI when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"shared test data missing: {path}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data():
    """Call with a path relative to ../shared/data, e.g. shared_data("dwm_realworld")."""
    return shared_path


@pytest.fixture
def tiny_recipe():
    from dwm_data.recipe import load_recipe

    return load_recipe("tiny")


def _import_or_fail(modname: str, minversion: str | None = None, reason: str | None = None, **_):
    """Under CI every dependency is installed: a module that cannot be imported is a broken
    install, so it fails the run instead of quietly skipping the tests that need it."""
    import importlib

    return importlib.import_module(modname)


if os.environ.get("CI"):
    pytest.importorskip = _import_or_fail
