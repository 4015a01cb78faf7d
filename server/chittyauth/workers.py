"""``serve --workers N``: N server processes on one gRPC and one HTTP port (SO_REUSEPORT).

The supervisor holds both ports, does the once-only start-up writes, then runs N workers, each
the normal server (``app.serve`` with its worker index), and the kernel spreads connections over
them. Their in-memory views follow the store's change log, so what one worker commits reaches
the others within the change feed's poll interval. The supervisor forwards SIGTERM/SIGINT to
every worker (each drains as one process does: see ``Server.stop``) and waits for them; when a
worker exits on its own it stops the others and exits non-zero, for the process manager to
restart the whole service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from chittyauth.config import Config

log = logging.getLogger(__name__)

MAX_WORKERS = 64
# Time a worker gets beyond its drain delay and grace period before it is killed.
_STOP_MARGIN_S = 10.0


def check_worker_count(count: int) -> str:
    """An error message when ``count`` is not a valid number of workers, else ''."""
    if 1 <= count <= MAX_WORKERS:
        return ""
    return f"--workers must be between 1 and {MAX_WORKERS}, not {count}"


def tag_log_lines(index: int) -> None:
    """Adds ``worker`` (the index) and ``pid`` to every log line of this process."""
    pid = os.getpid()

    def tag(record: logging.LogRecord) -> bool:
        record.worker = index
        record.pid = pid
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)


def end_with_parent() -> None:
    """Asks Linux to send this worker SIGTERM when its supervisor dies (even by SIGKILL), so
    no worker outlives it; a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def reserve_port(host: str, port: int) -> socket.socket:
    """Holds ``host:port`` (port 0: a free one) for the workers while they run.

    The returned socket is bound with SO_REUSEPORT and never listens, so the workers can bind
    beside it and no connection ever lands on it.

    Raises:
        OSError: the address cannot be bound, e.g. another server (or its workers) has it.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        # A first bind without SO_REUSEPORT fails if anything listens there, so two services
        # never share a port by accident; it also learns the port when 0 was asked for.
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            address = (address[0], probe.getsockname()[1], *address[2:])
        held = socket.socket(family, kind, proto)
        try:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            held.bind(address)
        except OSError:
            held.close()
            raise
    except OSError as exc:  # socket.gaierror included
        raise OSError(exc.errno, f"cannot bind {host}:{port}: {exc.strerror}") from exc
    return held


async def prepare(config: Config) -> None:
    """The start-up writes done once, before any worker starts, so N processes never race.

    Applies pending migrations, makes the first signing keys and session state key, and
    applies the clients file; workers (``Server.worker`` set) skip these writes.

    Raises:
        KeyEncryptionKeyError: a bad key-encryption key.
        DomainError: the database cannot be opened, or the clients file is bad.
    """
    from chittyauth.clients_file import apply_clients_file, secrets_dir_for
    from chittyauth.clock import SystemClock
    from chittyauth.domain.clients import ClientAdmin, ClientRegistry
    from chittyauth.domain.keys import KeyRing
    from chittyauth.domain.sync_state import StateKeyring, key_encryption_key
    from chittyauth.store.sqlite import SqliteStore

    clock = SystemClock()
    store = SqliteStore(config.store.path, clock, busy_timeout_ms=config.store.busy_timeout_ms)
    try:
        await store.open()  # applies pending migrations
        keys = KeyRing(store, clock, config)
        await keys.load()
        await keys.ensure_keys()
        kek = key_encryption_key(config.sessions, production=config.is_production)
        await StateKeyring(store, kek).load()
        if config.clients_file:
            registry = ClientRegistry(store)
            await registry.load()
            await apply_clients_file(
                config.clients_file,
                ClientAdmin(store, registry),
                registry,
                secrets_dir=secrets_dir_for(config.store.path),
            )
    finally:
        await store.close()


async def supervise(config: Config, count: int, cli_args: Sequence[str] = ()) -> int:
    """Runs ``count`` workers until SIGTERM/SIGINT (0) or until one exits on its own (1).

    Args:
        cli_args: the global options (``--config``, ``--log-level``) the workers get too.

    Returns:
        The exit code: 0 when every worker stopped cleanly, 1 when one failed or crashed, 2
        for a bad key-encryption key.
    """
    from chittyauth.domain.errors import DomainError
    from chittyauth.domain.keys import KeyEncryptionKeyError
    from chittyauth.rpc.forwarded import SECRET_ENV, new_secret

    held: list[socket.socket] = []
    try:
        # One shim secret for every worker: a worker's shim may reach another's gRPC server.
        env = {**os.environ, SECRET_ENV: new_secret()}
        try:
            # Workers must agree on one port: 0 is resolved here and handed to every worker.
            held.append(reserve_port(config.grpc.host, config.grpc.port))
            env["CHITTYAUTH_GRPC__PORT"] = str(held[-1].getsockname()[1])
            if config.http.enabled:
                held.append(reserve_port(config.http.host, config.http.port))
                env["CHITTYAUTH_HTTP__PORT"] = str(held[-1].getsockname()[1])
            await prepare(config)
        except KeyEncryptionKeyError as exc:
            log.error("cannot start", extra={"error": str(exc)})
            return 2
        except (OSError, DomainError) as exc:
            log.error("cannot start", extra={"error": str(exc)})
            return 1
        return await _run_workers(config, count, [*cli_args, "serve", "--workers", str(count)], env)
    finally:
        for sock in held:
            sock.close()


async def _run_workers(config: Config, count: int, args: list[str], env: dict[str, str]) -> int:
    loop = asyncio.get_running_loop()
    workers: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    sent: set[int] = set()

    def forward(signum: int) -> None:
        sent.add(signum)
        stop.set()
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, forward, signum)
    try:
        for index in range(count):
            if stop.is_set():
                break
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "chittyauth.cli", *args, "--worker-index", str(index),
                    stdin=asyncio.subprocess.DEVNULL, env=env,
                )
            )  # fmt: skip
        log.info(
            "workers started",
            extra={
                "grpc": f"{config.grpc.host}:{env['CHITTYAUTH_GRPC__PORT']}",
                "http": f"{config.http.host}:{env.get('CHITTYAUTH_HTTP__PORT', '')}",
                "pids": [worker.pid for worker in workers],
            },
        )
        exits = {asyncio.ensure_future(w.wait()): index for index, w in enumerate(workers)}
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
        crashed = not stop.is_set()
        if crashed:
            index = min(exits[task] for task in done if task in exits)
            log.error(
                "worker exited; stopping the others",
                extra={
                    "worker": index,
                    "worker_pid": workers[index].pid,
                    "exit_code": workers[index].returncode,
                },
            )
            forward(signal.SIGTERM)
        stopping.cancel()
        drain_s = config.grpc.drain_delay_s + config.grpc.grace_period_s
        clean = await _wait_stopped(workers, drain_s + _STOP_MARGIN_S)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    # A worker ended by the forwarded signal before it could handle it also stopped cleanly.
    clean = clean and all(w.returncode in (0, *(-s for s in sent)) for w in workers)
    log.info("workers stopped", extra={"exit_codes": [w.returncode for w in workers]})
    return 1 if crashed or not clean else 0


async def _wait_stopped(workers: Sequence[asyncio.subprocess.Process], timeout_s: float) -> bool:
    """Waits for every worker; kills those still running after ``timeout_s`` (then False)."""
    waits = [asyncio.ensure_future(worker.wait()) for worker in workers]
    _, pending = await asyncio.wait(waits, timeout=timeout_s) if waits else (set(), set())
    for worker in workers:
        if worker.returncode is None:
            log.error("worker did not stop in time; killing it", extra={"worker_pid": worker.pid})
            worker.kill()
    await asyncio.gather(*waits)
    return not pending
