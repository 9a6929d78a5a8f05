"""Per-unit timeouts read from the run folder, for backends that cannot watch a pipe."""

from __future__ import annotations

import json
import time

from dwm_data.run import RunFolder, record_failure


def overdue_unit(folder: RunFolder, task: int, timeout: float) -> str | None:
    """If the unit in flight in `task` is past `timeout`, record it as timed out and name it."""
    path = folder.task_file("running", task)
    try:
        current = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if time.time() - current["since"] <= timeout:
        return None
    record_failure(
        folder,
        task,
        current["unit"],
        "timeout",
        "Timeout",
        f"unit took longer than the {timeout:g} s timeout (run.unit_timeout)",
    )
    path.unlink(missing_ok=True)
    return current["unit"]
