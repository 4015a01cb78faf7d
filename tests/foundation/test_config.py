"""Configuration: TOML + environment, and a bad setting stops start-up with exit code 2."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from chittyauth.config import ConfigError, load_config


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chittyauth.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_defaults_serve_local_use() -> None:
    config = load_config(env={})
    assert (config.grpc.host, config.grpc.port) == ("127.0.0.1", 50051)
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.store.path.startswith("./var/")


def test_toml_and_env_override(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('mode = "development"\n[grpc]\nport = 6000\n[http]\ncors_origins = ["a"]\n')
    config = load_config(path, env={"CHITTYAUTH_GRPC__PORT": "7000"})
    assert config.grpc.port == 7000
    assert config.http.cors_origins == ("a",)


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("[grpc]\nprot = 1\n", {}, "grpc.prot"),
        ("colour = 1\n", {}, "colour"),
        ('[grpc]\nport = "x"\n', {}, "grpc.port"),
        ("", {"CHITTYAUTH_STORE__PATHH": "x"}, "store.pathh"),
        ("", {"CHITTYAUTH_MODE": "staging"}, "mode"),
        ("", {"CHITTYAUTH_HTTP__ENABLED": "maybe"}, "http.enabled"),
    ],
)
def test_bad_settings_name_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert named in str(caught.value)


async def test_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[grpc]\nbogus_limit = 3\n")
    code, _, err = await run_cli("--config", str(path), "serve")
    assert code == 2
    assert "grpc.bogus_limit" in err
    assert "Traceback" not in err


async def test_bad_env_value_exits_2(tmp_path: Path) -> None:
    code, _, err = await run_cli("serve", env={"CHITTYAUTH_GRPC__PORT": "eighty"})
    assert code == 2
    assert "grpc.port" in err


async def test_version_prints_the_package_version() -> None:
    from chittyauth import __version__

    code, out, _ = await run_cli("version")
    assert code == 0
    assert out.strip() == __version__
