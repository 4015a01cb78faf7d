"""``python -m bench.run`` (``make bench``): every scenario against its baseline; writes
bench/RESULTS.md.

Each gRPC or HTTP scenario runs ``BENCH_RUNS`` times (default 3), interleaved with its
baseline so drift hits both alike, for ``BENCH_DURATION_S`` (default 4) after a one-second
warm-up. The server under test is a separate ``python -m chittyauth.cli serve`` process on a
temp config and database; baselines are separate processes too (bench/baselines.py).
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from grpc import aio

from bench import fixture, loadgen
from bench.fixture import ChittyAuth, frame
from chitty.auth.v1 import auth_service_pb2, sync_service_pb2, sync_service_pb2_grpc

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "4"))
WARMUP_S = 1.0
STREAMS = 64
SPREAD_TOKENS = int(os.environ.get("BENCH_SPREAD_TOKENS", "10000"))
WATCHERS = int(os.environ.get("BENCH_WATCHERS", "1000"))
WORKERS = 2  # `serve --workers N` in the workers group
CONNECTIONS = 4  # h2load connections there: the kernel spreads connections, not calls
# Comma-separated scenario groups to run (grpc, spread, code, sync, http, workers, profile); all
# when empty. For quick, narrow measurements while working on one path.
ONLY = {g for g in os.environ.get("BENCH_ONLY", "").split(",") if g}
RESULTS = Path(os.environ.get("BENCH_RESULTS", fixture.ROOT / "bench" / "RESULTS.md"))
VALIDATE = "/chitty.auth.v1.AuthService/Validate"
EXCHANGE = "/chitty.auth.v1.AuthService/Exchange"
ECHO = "/bench.Echo/Echo"


@dataclass
class Scenario:
    """One measured thing: its runs, the baseline it is compared with, its target."""

    name: str
    generator: str
    baseline: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    target_rps_ratio: float = 0.0
    target_p99_ratio: float = 0.0
    note: str = ""

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs) if self.runs else 0.0

    def span(self, key: str) -> tuple[float, float]:
        values = [r[key] for r in self.runs] or [0.0]
        return min(values), max(values)

    def errors(self) -> int:
        return sum(int(r.get("errors", 0)) for r in self.runs)


@dataclass
class Bench:
    workdir: Path
    h2load: bool
    notes: list[str] = field(default_factory=list)
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)

    def add(self, scenario: Scenario) -> Scenario:
        self.scenarios[scenario.name] = scenario
        return scenario

    def grpc_unary(self, port: int, path: str, body: bytes, connections: int = 1) -> dict[str, Any]:
        """h2load when available (64 calls in flight over ``connections``), else the Python
        generator on the same single body."""
        if self.h2load:
            return loadgen.h2load_grpc(
                f"http://127.0.0.1:{port}{path}",
                body,
                duration_s=DURATION_S,
                warmup_s=WARMUP_S,
                streams=STREAMS,
                connections=connections,
            )
        return self.py_unary(port, path, [body])

    def py_unary(self, port: int, path: str, bodies: list[bytes]) -> dict[str, Any]:
        frames = Path(tempfile.mkstemp(prefix="bodies-", dir=self.workdir)[1])
        frames.write_bytes(b"".join(bodies))
        return loadgen.pyload(
            {
                "mode": "unary",
                "target": f"127.0.0.1:{port}",
                "method": path,
                "bodies": str(frames),
                "concurrency": STREAMS,
                "duration_s": DURATION_S,
                "warmup_s": WARMUP_S,
            },
            self.workdir,
        )


def _interleave(rounds: list[tuple[Scenario, Callable[[], dict[str, Any]]]]) -> None:
    for _ in range(RUNS):
        for scenario, run in rounds:
            scenario.runs.append(run())


def grpc_scenarios(bench: Bench, server: ChittyAuth, echo_port: int) -> None:
    hot = asyncio.run(fixture.exchange_once(server))
    reply = asyncio.run(fixture.validate_once(server.target, hot))
    if not reply.active:
        raise RuntimeError(f"the hot token does not validate: {reply}")
    validate_body = frame(auth_service_pb2.ValidateRequest(token=hot).SerializeToString())
    exchange_body = frame(fixture.exchange_cc_request(server).SerializeToString())
    gen = "h2load -c 1 -m 64" if bench.h2load else "bench.pyload (h2load unavailable)"
    echo = bench.add(Scenario("gRPC bare echo (baseline)", gen))
    validate = bench.add(
        Scenario(
            "gRPC Validate, one hot token",
            gen,
            echo.name,
            target_rps_ratio=0.9,
            target_p99_ratio=2.0,
        )
    )
    issue = bench.add(
        Scenario("gRPC Exchange client_credentials", gen, echo.name, target_rps_ratio=0.5)
    )
    _interleave(
        [
            (echo, lambda: bench.grpc_unary(echo_port, ECHO, validate_body)),
            (validate, lambda: bench.grpc_unary(server.grpc_port, VALIDATE, validate_body)),
            (issue, lambda: bench.grpc_unary(server.grpc_port, EXCHANGE, exchange_body)),
        ]
    )
    bench.extra["validate_body"] = validate_body
    bench.extra["exchange_body"] = exchange_body
    bench.extra["hot_token"] = hot


def spread_scenario(bench: Bench, server: ChittyAuth, echo_port: int) -> None:
    tokens: list[str] = bench.extra["spread_tokens"]
    if not asyncio.run(fixture.validate_once(server.target, tokens[-1])).active:
        raise RuntimeError("a minted token does not validate")
    bodies = [frame(auth_service_pb2.ValidateRequest(token=t).SerializeToString()) for t in tokens]
    gen = f"bench.pyload, 64 in flight, cycling {len(tokens):,} bodies"
    echo = bench.add(Scenario("gRPC bare echo, Python generator (baseline)", gen))
    spread = bench.add(Scenario(f"gRPC Validate over {len(tokens):,} tokens", gen, echo.name))
    _interleave(
        [
            (echo, lambda: bench.py_unary(echo_port, ECHO, bodies)),
            (spread, lambda: bench.py_unary(server.grpc_port, VALIDATE, bodies)),
        ]
    )


def mint_all(bench: Bench, server: ChittyAuth) -> None:
    """Signs every token the scenarios need in this process, while the server is stopped:
    a second process's store must not write beside a running server (see the notes)."""
    began = time.monotonic()
    specs = [
        {
            "subject": f"svc-{i}",
            "client_id": server.service_client,
            "token_use": "service",
            "scopes": ["mcp:read"],
        }
        for i in range(SPREAD_TOKENS)
    ]
    user = {
        "subject": fixture.USER,
        "chitty_id": fixture.USER,
        "client_id": "chittyauth-portal",
        "token_use": "portal",
        "scopes": ("mcp:read",),  # a person grants only scopes their token holds
        "session_id": "ses_bench",
    }
    sync_users = [
        {
            "subject": f"bench-user-{i}",
            "chitty_id": f"bench-user-{i}",
            "client_id": "chittyauth-portal",
            "token_use": "portal",
            "scopes": ["cross_sync"],
        }
        for i in range(STREAMS + 1)
    ]
    tokens = asyncio.run(fixture.mint_tokens(server.config_path, [*specs, user, *sync_users]))
    bench.extra["mint_s"] = time.monotonic() - began
    bench.extra["spread_tokens"] = tokens[: len(specs)]
    bench.extra["user_token"] = tokens[len(specs)]
    bench.extra["sync_tokens"] = tokens[len(specs) + 1 :]


def code_flow_scenario(bench: Bench, server: ChittyAuth) -> None:
    user = bench.extra["user_token"]
    verifier, challenge = fixture.pkce()
    job = {
        "mode": "code_flow",
        "target": server.target,
        "concurrency": STREAMS,
        "duration_s": DURATION_S,
        "warmup_s": WARMUP_S,
        "user_token": user,
        "client_id": server.extras["app_client"],
        "client_secret": server.extras["app_secret"],
        "redirect_uri": fixture.REDIRECT,
        "verifier": verifier,
        "challenge": challenge,
        "scopes": ["mcp:read"],
    }
    flow = bench.add(
        Scenario(
            "Authorization-code flow (Authorize + Exchange), flows/s",
            "bench.pyload, 64 flows in flight",
        )
    )
    _interleave([(flow, lambda: loadgen.pyload(job, bench.workdir))])


async def _make_sessions(server: ChittyAuth, tokens: list[str]) -> list[dict[str, Any]]:
    """One user, token and session per worker, created with SyncSession + a device."""
    users: list[dict[str, Any]] = []
    async with aio.insecure_channel(server.target) as channel:
        stub = sync_service_pb2_grpc.SyncServiceStub(channel)
        for i, token in enumerate(tokens):
            reply = await stub.SyncSession(
                sync_service_pb2.SyncSessionRequest(
                    device=sync_service_pb2.DeviceRegistration(
                        device_id=f"dev-{i}",
                        display_name="bench",
                        client_type=_client_type_web(),
                    ),
                    mcp_servers=["chittymcp"],
                ),
                metadata=(("authorization", f"Bearer {token}"),),
            )
            users.append({"token": token, "session": reply.session.name, "device": f"dev-{i}"})
    return users


def _client_type_web() -> int:
    from chitty.auth.v1 import session_pb2

    return int(session_pb2.CLIENT_TYPE_WEB)


def sync_scenarios(bench: Bench, server: ChittyAuth) -> None:
    users = asyncio.run(_make_sessions(server, bench.extra["sync_tokens"]))
    job = {
        "mode": "sync_state",
        "target": server.target,
        "concurrency": STREAMS,
        "duration_s": DURATION_S,
        "warmup_s": WARMUP_S,
        "users": users[:STREAMS],
        "mcp_server": "chittymcp",
        "state_bytes": 1024,
    }
    sync = bench.add(
        Scenario(
            "SyncSession + PutSessionState (1 KiB), pairs/s",
            "bench.pyload, 64 sessions in flight",
        )
    )
    _interleave([(sync, lambda: loadgen.pyload(job, bench.workdir))])
    watcher = users[STREAMS]
    watch_job = {
        "mode": "watch",
        "target": server.target,
        "watchers": WATCHERS,
        "writes": 200,
        "write_interval_s": 0.01,
        "session": watcher["session"],
        "watch_token": watcher["token"],
        "writer": watcher,
        "mcp_server": "chittymcp",
    }
    bench.extra["watch"] = loadgen.pyload(watch_job, bench.workdir)


def http_scenarios(bench: Bench, server: ChittyAuth) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        bench.notes.append(
            f"HTTP scenarios skipped: the HTTP shim does not answer on {base}/healthz ({exc})."
        )
        return
    ok, note = loadgen.ensure_tool("wrk", "wrk")
    if note:
        bench.notes.append(note)
    if not ok:
        bench.notes.append("HTTP scenarios skipped: wrk is not available.")
        return
    import base64

    basic = base64.b64encode(f"{server.service_client}:{server.service_secret}".encode()).decode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": f"Basic {basic}",
    }
    bench.extra["http_headers"] = headers
    aio_proc, aio_port = fixture.start_baseline("http", bench.workdir)
    try:
        gen = "wrk -t 1 -c 64"
        baseline = bench.add(Scenario("HTTP bare aiohttp JSON (baseline)", gen))
        introspect = bench.add(
            Scenario("HTTP POST /introspect", gen, baseline.name, target_rps_ratio=0.6)
        )
        token = bench.add(Scenario("HTTP POST /token client_credentials", gen, baseline.name))
        hot = bench.extra["hot_token"]

        def wrk(url: str, body: str) -> dict[str, Any]:
            return loadgen.wrk_post(url, body, duration_s=DURATION_S, headers=headers)

        _interleave(
            [
                (baseline, lambda: wrk(f"http://127.0.0.1:{aio_port}/introspect", f"token={hot}")),
                (introspect, lambda: wrk(f"{base}/introspect", f"token={hot}")),
                (token, lambda: wrk(f"{base}/token", "grant_type=client_credentials")),
            ]
        )
    finally:
        aio_proc.stop()


def workers_scenarios(bench: Bench, server: ChittyAuth, echo_port: int) -> None:
    """Validate and Exchange with ``serve --workers 2``, 64 calls in flight over 4 connections,
    against the bare echo (one process) driven the same way."""
    if not bench.h2load or "validate_body" not in bench.extra:
        bench.notes.append("workers scenarios skipped: they need h2load and the gRPC group.")
        return
    gen = f"h2load -c {CONNECTIONS} -m {STREAMS // CONNECTIONS}"
    echo = bench.add(Scenario(f"gRPC bare echo, {CONNECTIONS} connections (baseline)", gen))
    validate = bench.add(
        Scenario(
            f"gRPC Validate, one hot token, --workers {WORKERS}",
            gen,
            echo.name,
            target_rps_ratio=0.9,
            target_p99_ratio=2.0,
        )
    )
    issue = bench.add(
        Scenario(
            f"gRPC Exchange client_credentials, --workers {WORKERS}",
            gen,
            echo.name,
            target_rps_ratio=0.5,
        )
    )

    run = partial(bench.grpc_unary, connections=CONNECTIONS)
    fixture.restart(server, workers=WORKERS)
    try:
        _interleave(
            [
                (echo, lambda: run(echo_port, ECHO, bench.extra["validate_body"])),
                (validate, lambda: run(server.grpc_port, VALIDATE, bench.extra["validate_body"])),
                (issue, lambda: run(server.grpc_port, EXCHANGE, bench.extra["exchange_body"])),
            ]
        )
    finally:
        fixture.restart(server)  # the profiles sample the single process


def profile(bench: Bench, server: ChittyAuth, scenario: Scenario) -> None:
    """py-spy samples the server during one more run: where its event-loop thread's time
    goes; for gRPC Validate, the bare echo is sampled the same way beside it."""
    if not _has_py_spy():
        bench.notes.append("profiling skipped: py-spy is not installable")
        return
    extra = bench.extra
    load: Callable[[], Any]
    if "Exchange" in scenario.name:
        load = partial(bench.grpc_unary, server.grpc_port, EXCHANGE, extra["exchange_body"])
    elif "/introspect" in scenario.name:
        load = partial(
            loadgen.wrk_post,
            f"http://127.0.0.1:{server.http_port}/introspect",
            f"token={extra['hot_token']}",
            duration_s=DURATION_S,
            # The measured run's headers: without client authentication every request would
            # be a refused (and audited) one, and the profile would show the wrong path.
            headers=extra["http_headers"],
        )
    else:
        load = partial(bench.grpc_unary, server.grpc_port, VALIDATE, extra["validate_body"])
        echo_pid, echo_port = extra["echo"]
        echo = bench.scenarios[scenario.baseline]
        stacks = _spy(
            bench, echo_pid, partial(bench.grpc_unary, echo_port, ECHO, extra["validate_body"])
        )
        if stacks:
            bench.profiles[f"{echo.name}, for comparison"] = summarize_profile(
                stacks, echo.median("rps"), entry="bench/baselines.py"
            )
    stacks = _spy(bench, server.proc.pid, load)
    if stacks:
        bench.profiles[scenario.name] = summarize_profile(stacks, scenario.median("rps"))


def _spy(bench: Bench, pid: int, load: Callable[[], Any]) -> str | None:
    """py-spy --native samples process ``pid`` while ``load`` runs; its raw stacks."""
    out = bench.workdir / f"profile-{len(bench.profiles)}-{pid}.txt"
    spy = subprocess.Popen(  # our own venv's tool, fixed arguments
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            f"{DURATION_S + 1:g}",
            "--format",
            "raw",
            "--output",
            str(out),
            # Native frames need the process paused per sample (no --nonblocking): the
            # sampled run is slower than the measured ones.
            "--native",
            "--rate",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    load()
    _, err = spy.communicate(timeout=60)
    if not out.exists():
        bench.notes.append(f"py-spy produced no profile of process {pid}: {err[-300:]!r}")
        return None
    return out.read_text()


def _has_py_spy() -> bool:
    """py-spy in this interpreter's environment, installed from PyPI when missing."""
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"],
            capture_output=True,
            timeout=240,
            check=False,
        )
    return binary.exists()


# Where the event-loop thread's samples end, by the file or library of the innermost frame.
_COMPONENTS = (
    ("gRPC (cygrpc, grpc core)", ("cygrpc", "grpc/", "libgrpc")),
    ("event loop (uvloop, asyncio)", ("uvloop", "loop.c", "asyncio", "core.c", "uv__")),
    ("socket and epoll system calls", ("sendmsg", "recv", "epoll", "write (libc", "read (libc")),
    ("protobuf", ("_message", "protobuf")),
    ("SQLite", ("sqlite",)),
    ("JWT and crypto", ("jwt/", "cryptography", "libcrypto", "hashlib", "hmac")),
    ("json", ("json",)),
    ("metrics (prometheus_client)", ("prometheus",)),
)
# The entry point's frames are on every stack of the event-loop thread.
_ENTRY = "chittyauth/cli.py"
_LINE = re.compile(r":\d+\)$")


def _component(frame: str) -> str:
    for name, needles in _COMPONENTS:
        if any(needle in frame for needle in needles):
            return name
    return "CPython runtime and other"


def summarize_profile(
    collapsed: str, rps: float = 0.0, *, entry: str = _ENTRY, top: int = 10
) -> list[str]:
    """Where a server's event-loop thread spends its time, from py-spy --native stacks.

    The samples whose stack passes through ChittyAuth code (the RPC handlers and all they
    call) are one share; the rest is split by the library of the innermost frame. With the
    scenario's measured ``rps``, each share is also given in microseconds per call: the loop
    thread is busy all the time under this load, so a share of its second is spread over that
    many calls. (The sampled run itself is slower: py-spy pauses the process per sample.)
    """
    ours: Counter[str] = Counter()
    components: Counter[str] = Counter()
    own_ours: Counter[str] = Counter()
    samples = in_ours = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if entry not in stack or not count_text.isdigit():
            continue  # another thread: aiosqlite's, grpc's, py-spy's view of idle ones
        count = int(count_text)
        # One name per function: line numbers would split a function over many rows.
        frames = [_LINE.sub(")", f.strip()) for f in stack.split(";") if f.strip()]
        samples += count
        mine = [f for f in frames if "chittyauth/" in f and _ENTRY not in f]
        if mine:
            in_ours += count
            own_ours[next(f for f in reversed(frames) if "(" in f)] += count
            for name in set(mine):
                ours[name] += count
        else:
            components[_component(frames[-1])] += count
    if not samples:
        return ["(no samples)"]

    def row(n: int, name: str) -> str:
        share = n / samples
        per_call = f"{share * 1e6 / rps:7.1f} us/call  " if rps else ""
        return f"  {100 * share:5.1f}%  {per_call}{name}"

    lines = [
        f"{samples} samples of the event-loop thread at 200 Hz (py-spy --native)"
        + (f"; us/call at the measured {rps:,.0f} req/s" if rps else ""),
        "",
        "share of the event-loop thread:",
    ]
    if in_ours:
        lines.append(row(in_ours, "ChittyAuth code and everything it calls"))
    lines += [row(n, name) for name, n in components.most_common()]
    if ours:
        lines += ["", "ChittyAuth functions, inclusive:"]
        lines += [row(n, name) for name, n in ours.most_common(top)]
        lines += ["", "innermost frames under ChittyAuth code:"]
        lines += [row(n, name) for name, n in own_ours.most_common(top)]
    return lines


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    import grpc

    h2 = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "loop": loop,
        "grpcio": grpc.__version__,
        "h2load": h2.stdout.strip() or "not installed",
        "kernel": platform.release(),
    }


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def write_report(bench: Bench, elapsed: float, command: str) -> None:
    info = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')} in {elapsed:.0f} s.",
        "",
        f"Machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}; Python "
        f"{info['python']}, {info['loop']}, grpcio {info['grpcio']}; {info['h2load']}.",
        "",
        f"Method: every row is the median of {RUNS} runs of {DURATION_S:g} s (after a 1 s "
        "warm-up), interleaved with its baseline; min–max over the runs in brackets. 64 "
        "requests in flight on one HTTP/2 connection (gRPC) or 64 keep-alive connections "
        "(wrk). The server is `python -m chittyauth.cli serve` (uvloop) in its own process "
        "with a fresh SQLite database and rate limits off; the load generator is another "
        "process on the same 2 cores, so absolute numbers include its CPU share and only the "
        "ratios to the baseline (measured the same way) carry over to other machines. "
        "The `--workers 2` rows run `serve --workers 2` (two processes on one port) with 64 "
        "calls over 4 connections, against the one-process echo driven the same way. How "
        "to read these numbers, what changed because of them and what stands in the way: "
        "[docs/performance.md](../docs/performance.md).",
        "",
        "| scenario | generator | req/s median [min–max] | p50 ms | p99 ms | vs baseline "
        "req/s | vs baseline p99 | target | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    verdicts: list[str] = []
    for s in bench.scenarios.values():
        lo, hi = s.span("rps")
        ratio = p99_ratio = ""
        target = ""
        if s.baseline and s.baseline in bench.scenarios:
            base = bench.scenarios[s.baseline]
            r = s.median("rps") / base.median("rps") if base.median("rps") else 0.0
            p = s.median("p99_ms") / base.median("p99_ms") if base.median("p99_ms") else 0.0
            ratio, p99_ratio = f"{r:.2f}x", f"{p:.2f}x"
            if s.target_rps_ratio:
                met = r >= s.target_rps_ratio and (
                    not s.target_p99_ratio or p <= s.target_p99_ratio
                )
                want = f">= {s.target_rps_ratio}x req/s"
                if s.target_p99_ratio:
                    want += f", p99 <= {s.target_p99_ratio}x"
                target = f"{want}: **{'met' if met else 'not met'}**"
                verdicts.append(f"- {s.name}: {want} — {'met' if met else 'NOT met'} "
                                f"({ratio} req/s, {p99_ratio} p99).")  # fmt: skip
        lines.append(
            f"| {s.name} | {s.generator} | {_fmt(s.median('rps'))} [{_fmt(lo)}–{_fmt(hi)}] | "
            f"{s.median('p50_ms'):.2f} | {s.median('p99_ms'):.2f} | {ratio} | {p99_ratio} | "
            f"{target} | {s.errors()} |"
        )
    lines += ["", "## Targets", "", *verdicts]
    watch = bench.extra.get("watch")
    if watch:
        lines += [
            "",
            "## WatchSessions fan-out",
            "",
            f"{watch['watchers']:,} WatchSessions streams on one session, in one client "
            f"process; one writer does {watch['writes']} PutSessionState calls 10 ms apart. "
            f"Delivered {watch['delivered']:,} of {watch['expected']:,} events, "
            f"{watch['events_per_s']:,.0f} events/s; delay from a write's reply to its "
            f"event on a stream: p50 {watch['delay_p50_ms']:.1f} ms, p99 "
            f"{watch['delay_p99_ms']:.1f} ms; errors {watch['errors']} "
            f"{watch.get('error_kinds') or ''}",
        ]
    if "mint_s" in bench.extra:
        lines += [
            "",
            f"The {SPREAD_TOKENS:,} spread tokens were signed with the server's key ring in the "
            f"bench process (same database) in {bench.extra['mint_s']:.1f} s.",
        ]
    errs = [
        f"- {s.name}: {r['error_kinds']}"
        for s in bench.scenarios.values()
        for r in s.runs[:1]
        if r.get("error_kinds")
    ]
    if errs:
        lines += ["", "## Errors seen (first run of each)", "", *errs]
    if bench.profiles:
        lines += ["", "## Profiles of the server where a target is not met", ""]
        for name, summary in bench.profiles.items():
            lines += [f"### {name}", "", "```", *summary, "```", ""]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in bench.notes] or ["- none"]
    lines += ["", SCALE_DOC]
    scale = fixture.ROOT / "bench" / "SCALE.md"
    if scale.exists():
        lines += ["", scale.read_text().strip()]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


SCALE_DOC = """## Scale (`make bench-scale`, not part of `make bench`)

`python -m bench.scale` builds two databases (`chittyauth migrate`, real signed tokens from the
server's key ring, then bulk sqlite3 `executemany` rows): 1,000 issued tokens, and 1,000,000
issued tokens with 100,000 live revocations. It measures Validate (one hot token, and a spread
over 1,000 tokens) on both, alternating, the server's RSS at 1,000,000 (VmRSS), and start-up to
SERVING (grpc.health.v1 Check). Its last results are in bench/SCALE.md, appended below."""


def _step(bench: Bench, name: str, fn: Callable[[], None], group: str = "") -> None:
    """Runs one scenario group; a failure becomes a note, the other groups still run."""
    if ONLY and group and group not in ONLY:
        return
    began = time.monotonic()
    try:
        fn()
    except Exception as exc:
        bench.notes.append(f"{name} failed: {type(exc).__name__}: {str(exc)[:600]}")
    print(f"bench: {name} done in {time.monotonic() - began:.0f} s", file=sys.stderr)


def main() -> int:
    started = time.monotonic()
    command = "make bench  (" + shlex.join([sys.executable, "-m", "bench.run"]) + ")"
    has_h2load, note = loadgen.ensure_tool("h2load", "nghttp2-client")
    workdir = Path(tempfile.mkdtemp(prefix="chittyauth-bench-"))
    bench = Bench(workdir, has_h2load)
    if note:
        bench.notes.append(note)
    if not has_h2load:
        bench.notes.append("h2load could not be installed: gRPC scenarios use bench.pyload.")
    echo_proc, echo_port = fixture.start_baseline("grpc", workdir)
    bench.extra["echo"] = (echo_proc.pid, echo_port)
    server = fixture.start_chittyauth(workdir)
    try:
        asyncio.run(fixture.provision(server))
        server.proc.stop()
        mint_all(bench, server)
        fixture.restart(server)
        _step(
            bench,
            "gRPC Validate/Exchange",
            lambda: grpc_scenarios(bench, server, echo_port),
            "grpc",
        )
        _step(bench, "Validate spread", lambda: spread_scenario(bench, server, echo_port), "spread")
        _step(bench, "authorization-code flow", lambda: code_flow_scenario(bench, server), "code")
        _step(bench, "sync and watch", lambda: sync_scenarios(bench, server), "sync")
        if "hot_token" in bench.extra:
            _step(bench, "HTTP shim", lambda: http_scenarios(bench, server), "http")
        _step(
            bench,
            f"--workers {WORKERS}",
            lambda: workers_scenarios(bench, server, echo_port),
            "workers",
        )
        for s in list(bench.scenarios.values()):
            if s.target_rps_ratio and s.baseline in bench.scenarios and s.runs:
                base = bench.scenarios[s.baseline]
                r = s.median("rps") / max(base.median("rps"), 1e-9)
                p = s.median("p99_ms") / max(base.median("p99_ms"), 1e-9)
                if r >= s.target_rps_ratio and not (s.target_p99_ratio and p > s.target_p99_ratio):
                    continue
                if "--workers" in s.name:  # the profile samples one process
                    bench.notes.append(
                        f"{s.name} is not profiled (two processes); what stands in its way is "
                        "in docs/performance.md."
                    )
                    continue
                _step(bench, f"profile {s.name}", lambda s=s: profile(bench, server, s), "profile")
    finally:
        server.proc.stop()
        echo_proc.stop()
    write_report(bench, time.monotonic() - started, command)
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
