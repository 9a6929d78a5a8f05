"""Errors that the run machinery knows how to record.

A builder raises `UnitError` for anything wrong with one work unit (a corrupt video, a short clip,
NaN poses): the executor records it under `failures/` with its stage and the run goes on. Any other
exception is recorded the same way with stage "unexpected", so a bug costs one unit, not the run.
"""

from __future__ import annotations


class DwmDataError(Exception):
    """Base class: an error whose message is meant for the user, shown without a traceback."""


class UnitError(DwmDataError):
    """One work unit cannot be turned into samples; `stage` says where it failed."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"

    def __reduce__(self):  # pickled across processes (a pool, Ray) with both fields
        return type(self), (self.stage, self.message)


class MissingExtraError(DwmDataError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class MissingAssetError(DwmDataError):
    """A user-supplied asset (model file, weights, dataset) is missing: what, where looked, how to get it."""

    def __init__(self, what: str, looked: str, how: str):
        super().__init__(f"{what} not found (looked in {looked}); {how}")


class SampleError(DwmDataError):
    """A sample breaks the schema (mismatched videos, bad key, missing member)."""
