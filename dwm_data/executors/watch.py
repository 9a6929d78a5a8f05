"""Per-unit timeouts read from the run folder, for backends that cannot watch a pipe."""

from __future__ import annotations

import time

from dwm_data.run import RunFolder, read_running, record_failure


def overdue_unit(folder: RunFolder, task: int, timeout: float) -> str | None:
    """If the unit in flight in `task` is past `timeout`, record it as timed out and name it."""
    current = read_running(folder, task)
    if not current or time.time() - current["since"] <= timeout:
        return None
    record_failure(
        folder,
        task,
        current["unit"],
        "timeout",
        "Timeout",
        f"unit took longer than the {timeout:g} s timeout (run.unit_timeout)",
    )
    folder.task_file("running", task).unlink(missing_ok=True)
    return current["unit"]
