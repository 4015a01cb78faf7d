"""pytest fixtures over the helpers in this package."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.devauthority import DevAuthority


@pytest.fixture
async def dev_authority(tmp_path: Path) -> AsyncIterator[DevAuthority]:
    """A running dev authority (real subprocess) with its own data file, stopped afterwards."""
    authority = DevAuthority(tmp_path / "dev-authority")
    authority.workdir.mkdir()
    async with authority:
        yield authority
