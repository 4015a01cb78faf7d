"""The ``chittyauth`` command ends with one clear line, never a traceback or a hang.

Real processes throughout: a port taken by another socket, a database whose write lock another
process holds, a mistyped store path, and ``audit export`` read by ``head -1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

from chittyauth.clock import SystemClock
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore
from tests.foundation.test_store_faults import write_lock_held

ROOT = Path(__file__).resolve().parents[2]
BUSY_TIMEOUT_MS = 1000
# Start-up (imports, opening the store) on a busy machine, on top of the busy timeout.
START_SLACK_S = 15.0


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHITTYAUTH_")}
    env.update(
        PYTHONPATH=os.pathsep.join(sys.path),
        CHITTYAUTH_STORE__PATH=str(tmp_path / "chittyauth.db"),
        CHITTYAUTH_GRPC__PORT="0",
        CHITTYAUTH_HTTP__PORT="0",
        CHITTYAUTH_STORE__BUSY_TIMEOUT_MS=str(BUSY_TIMEOUT_MS),
    )
    env.update(settings)
    return env


async def run_cli(
    *args: str, env: dict[str, str], timeout_s: float = 30.0
) -> tuple[int, str, str, float]:
    """Runs ``chittyauth ARGS``; (exit code, stdout, stderr, seconds). A hang fails the test."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chittyauth.cli", *args,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chittyauth {' '.join(args)} neither exited nor was killed") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.monotonic() - started


def one_line(err: str) -> dict[str, object]:
    """The single log line on stderr (a JSON object), with no traceback around it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    entry: dict[str, object] = json.loads(lines[0])
    return entry


async def make_database(path: Path, audit_records: int = 0) -> None:
    store = SqliteStore(path, SystemClock())
    await store.open()
    try:
        async with store.transaction() as tx:
            for index in range(audit_records):
                await tx.audit(AuditRecord("ops", f"subject-{index}", "test.step", "success"))
    finally:
        await store.close()


async def test_serve_on_a_busy_port_exits_1_with_one_line(tmp_path: Path) -> None:
    for setting in ("CHITTYAUTH_GRPC__PORT", "CHITTYAUTH_HTTP__PORT"):
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            code, _, err, _ = await run_cli("serve", env=cli_env(tmp_path, **{setting: str(port)}))
        assert code == 1
        entry = one_line(err)
        assert entry["message"] == "cannot start"
        assert f"cannot bind 127.0.0.1:{port}" in str(entry["error"])
        assert not (tmp_path / "chittyauth.db").exists()  # refused before the store is touched


async def test_serve_on_a_locked_database_exits_1_within_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chittyauth.db"
    await make_database(path)
    async with write_lock_held(path):
        code, _, err, took = await run_cli("serve", env=cli_env(tmp_path))
    assert code == 1
    entry = one_line(err)
    assert entry["message"] == "cannot start"
    assert (
        entry["error"]
        == f"cannot open the database at {path}: another process holds its write lock"
    )
    assert took < BUSY_TIMEOUT_MS / 1000 + START_SLACK_S


async def test_serve_on_a_new_database_locked_before_its_first_write_exits_1(
    tmp_path: Path,
) -> None:
    # A file another process created and still holds: not even WAL mode can be set.
    path = tmp_path / "chittyauth.db"
    async with write_lock_held(path):
        code, _, err, _ = await run_cli("serve", env=cli_env(tmp_path))
    assert code == 1
    assert "another process holds its write lock" in str(one_line(err)["error"])


async def test_migrate_on_a_locked_database_exits_1_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "chittyauth.db"
    await make_database(path)
    async with write_lock_held(path):
        code, _, err, _ = await run_cli("migrate", env=cli_env(tmp_path))
    assert code == 1
    assert err.strip().splitlines() == [
        f"chittyauth: cannot open the database at {path}: another process holds its write lock"
    ]


async def test_audit_refuses_a_store_path_that_does_not_exist(tmp_path: Path) -> None:
    mistyped = tmp_path / "chittyuath.db"
    env = cli_env(tmp_path, CHITTYAUTH_STORE__PATH=str(mistyped))
    for action in ("verify", "export"):
        code, out, err, _ = await run_cli("audit", action, env=env)
        assert code == 2
        assert out == ""
        assert err.strip() == (
            f"chittyauth: no database at {mistyped} (set [store] path or CHITTYAUTH_STORE__PATH)"
        )
        assert not mistyped.exists()  # no new, empty, "intact" database


async def test_audit_on_a_file_that_is_not_a_database_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "chittyauth.db"
    path.write_bytes(b"not a database at all, just some bytes " * 100)
    code, _, err, _ = await run_cli("audit", "verify", env=cli_env(tmp_path))
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().startswith(f"chittyauth: cannot open the database at {path}")


async def test_audit_export_read_by_head_ends_quietly(tmp_path: Path) -> None:
    path = tmp_path / "chittyauth.db"
    # Far more than a pipe holds, so the export is still writing when head leaves.
    await make_database(path, audit_records=3000)
    err_file = tmp_path / "export.err"
    command = (
        f"{sys.executable} -m chittyauth.cli audit export 2>{err_file} | head -1;"
        ' echo "exit ${PIPESTATUS[0]}"'
    )
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=ROOT, env=cli_env(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    first, status = out.decode().splitlines()
    assert json.loads(first)["sequence"] == 1
    assert err_file.read_text() == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert status == "exit 141"  # as cat or grep stopped by head: 128 + SIGPIPE
