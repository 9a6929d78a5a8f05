"""Where third-party output goes: the run's logs, not the terminal.

TFLite, absl/glog, Blender ("Read blend: ...") and projectaria-tools print from C straight to
file descriptors 1 and 2, so redirecting `sys.stdout` would not catch them; this moves the
descriptors themselves. Workers send theirs to their task log for their whole life; the driver
sends its own only while it plans (a plan may open a .blend), so its progress bar and summary
stay on the terminal; a step that draws its own progress bar keeps stdout and sends stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def output_to(path: Path, fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Append everything written to `fds` (stdout and stderr) to `path` until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for fd in fds:
            os.dup2(log, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
        for fd in (log, *saved):
            os.close(fd)
