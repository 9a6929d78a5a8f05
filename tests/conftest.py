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


# build-ego's tests: a splat small enough for a test (few steps at a low training width) ...
FAST_SPLAT = [
    "ego.train_width=96",
    "ego.splat.steps=120",
    "ego.splat.refine_start=30",
    "ego.splat.refine_every=20",
    "ego.splat.refine_stop=100",
    "ego.splat.max_gaussians=4000",
]


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Path:
    """... and the generated walk (2 s at 16 fps, a hand from 0.4 s), with what a capture rig
    adds beside it: hands, true poses and true depth."""
    from dwm_data.fixtures.ego import write_ego_video

    return write_ego_video(tmp_path_factory.mktemp("ego") / "videos", 2.0)


def _import_or_fail(modname: str, minversion: str | None = None, reason: str | None = None, **_):
    """Under CI every dependency is installed: a module that cannot be imported is a broken
    install, so it fails the run instead of quietly skipping the tests that need it."""
    import importlib

    return importlib.import_module(modname)


if os.environ.get("CI"):
    pytest.importorskip = _import_or_fail
