"""pytest fixtures over the helpers in this package."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chittyauth.config import Config, replace
from tests.support.devauthority import DevAuthority


@pytest.fixture
async def dev_authority(tmp_path: Path) -> AsyncIterator[DevAuthority]:
    """A running dev authority (real subprocess) with its own data file, stopped afterwards."""
    authority = DevAuthority(tmp_path / "dev-authority")
    authority.workdir.mkdir()
    async with authority:
        yield authority


@contextlib.asynccontextmanager
async def vouching_authority(tmp_path: Path, *known_ids: str) -> AsyncIterator[DevAuthority]:
    """A running dev authority that vouches for ``known_ids`` (and what it mints)."""
    authority = DevAuthority(tmp_path / "vouching-authority", known_ids=known_ids)
    authority.workdir.mkdir()
    async with authority:
        yield authority


def with_authority(config: Config, authority: DevAuthority) -> Config:
    """``config`` whose ChittyID authority is ``authority`` (a real dev-authority process)."""
    return replace(
        config, authority=dataclasses.replace(config.authority, url=authority.authority_url)
    )
