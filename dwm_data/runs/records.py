"""The per-task files written while units run: failures, units without samples, the unit in
flight (`running/<task>.json`) and the deaths a supervisor saw.

Each file has one writer and one reader here. Append-only files are written a line at a time
and fsynced, so a kill can at worst cut the line being written, which readers skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dwm_data.runs.folder import RunFolder
from dwm_data.store import write_json_atomic

# A running file whose supervisor has not refreshed it for this long belongs to a dead run.
HEARTBEAT_STALE = 15.0


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line durably."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a kill
                records.append(json.loads(line))
    return records


# --- failures and units without samples ---------------------------------------------------------


def record_failure(
    folder: RunFolder, task: int, unit: str, stage: str, error: str, message: str
) -> None:
    record = {"unit": unit, "stage": stage, "error": error, "message": message, "time": time.time()}
    append_line(folder.task_file("failures", task), record)


def read_failures(folder: RunFolder, task: int) -> dict[str, dict[str, Any]]:
    """unit -> its last failure record, for units not retried since."""
    out: dict[str, dict[str, Any]] = {}
    for record in read_lines(folder.task_file("failures", task)):
        if record.get("retracted"):
            out.pop(record["unit"], None)
        else:
            out[record["unit"]] = record
    return out


def retract_failures(folder: RunFolder, task: int, units: list[str]) -> None:
    """Give failed units another chance: their failures and their deaths are forgotten."""
    for kind in ("failures", "deaths"):
        for unit in units:
            append_line(folder.task_file(kind, task), {"unit": unit, "retracted": True})


def record_empty(folder: RunFolder, task: int, unit: str) -> None:
    append_line(folder.task_file("empty", task), {"unit": unit})


def read_empty(folder: RunFolder, task: int) -> list[str]:
    """Units that rightly produced no sample (e.g. nothing moved): done without a shard."""
    return [r["unit"] for r in read_lines(folder.task_file("empty", task))]


# --- the unit in flight -------------------------------------------------------------------------


def write_running(folder: RunFolder, task: int, unit: str, open_units: int) -> None:
    """Name the unit this worker starts, who runs it and who supervises it."""
    record = {
        "unit": unit,
        "since": time.time(),
        "pid": os.getpid(),
        "supervisor": os.getppid(),
        "host": socket.gethostname(),
        "open_units": open_units,
    }
    write_json_atomic(folder.task_file("running", task), record)


def heartbeat(folder: RunFolder, task: int) -> None:
    """The supervisor's sign of life: the running file's mtime (never its content, which the
    worker may be replacing at the same moment)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(folder.task_file("running", task))


def read_running(folder: RunFolder, task: int) -> dict[str, Any]:
    """The unit in flight in `task` ({} when none), with its heartbeat time and whether the
    worker is alive; a file cut by a kill reads as none."""
    path = folder.task_file("running", task)
    try:
        record = json.loads(path.read_text())
        record["heartbeat"] = path.stat().st_mtime
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    record["alive"] = _alive(record)
    return record


def _alive(record: dict[str, Any]) -> bool:
    if time.time() - record["heartbeat"] > HEARTBEAT_STALE:
        return False
    if record.get("host") != socket.gethostname():
        return True  # another machine's worker: its heartbeat is all we can see
    try:
        os.kill(record.get("pid", 0), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_running(folder: RunFolder, task: int) -> None:
    folder.task_file("running", task).unlink(missing_ok=True)


# --- deaths -------------------------------------------------------------------------------------


def read_deaths(folder: RunFolder, task: int) -> Counter[str]:
    deaths: Counter[str] = Counter()
    for record in read_lines(folder.task_file("deaths", task)):
        if record.get("retracted"):
            deaths.pop(record["unit"], None)
        else:
            deaths[record["unit"]] += 1
    return deaths


def charge_death(folder: RunFolder, task: int, restarts: int, cause: str) -> str | None:
    """Charge a worker's death to the unit it was processing; returns that unit, if any.

    Only a supervisor that is alive and saw its worker die under it may call this: the death of
    the whole run (driver, node, allocation) is charged to no one, and the unit is redone free.
    After `restarts` deaths the unit is recorded as crashed, so it cannot stall its task.
    """
    unit = read_running(folder, task).get("unit")
    clear_running(folder, task)
    if not unit:
        return None
    append_line(
        folder.task_file("deaths", task), {"unit": unit, "cause": cause, "time": time.time()}
    )
    deaths = read_deaths(folder, task)[unit]
    if deaths >= restarts:
        record_failure(
            folder,
            task,
            unit,
            "crash",
            "WorkerDied",
            f"the worker died {deaths} times while processing this unit (last: {cause})",
        )
    return unit
