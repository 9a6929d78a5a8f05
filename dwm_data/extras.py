"""Import optional heavy dependencies with a one-line hint naming the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from dwm_data.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise a one-line error telling which `dwm-data[extra]` to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # a broken install of the module also lands here, so say why
        raise MissingExtraError(
            f"'{module}' is needed here but cannot be imported ({exc}); "
            f"install it with: pip install 'dwm-data[{extra}]'"
        ) from exc
