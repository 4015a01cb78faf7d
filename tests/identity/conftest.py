"""Fixtures for the identity tests."""

from __future__ import annotations

import sys
from pathlib import Path

# Stopgap until pytest puts the repository root on sys.path (`pythonpath = ["."]`): without
# it `tests.support` is not importable when pytest is run as `.venv/bin/pytest`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.fixtures import dev_authority  # noqa: E402

__all__ = ["dev_authority"]
