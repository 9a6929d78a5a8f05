"""Where third-party output goes: the run's logs, not the terminal.

TFLite, absl/glog, Blender ("Read blend: ...") and projectaria-tools print from C straight to
file descriptors 1 and 2, so redirecting `sys.stdout` would not catch them; this moves the
descriptors themselves. Workers send theirs to their task log for their whole life; the driver
sends its own only while it plans (a plan may open a .blend), so its progress bar and summary
stay on the terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Append everything written to fds 1 and 2 to `path` until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (log, *saved):
            os.close(fd)
