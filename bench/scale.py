"""``python -m bench.scale`` (``make bench-scale``): Validate at 1,000 vs 1,000,000 issued
tokens, start-up time and memory with 100,000 live revocations; writes bench/SCALE.md.

Two databases are built the same way: ``chittyauth migrate``, one start (so the key ring
exists), real signed tokens minted with the server's key ring (the hot and spread scenarios
validate those), then bookkeeping rows in bulk with sqlite3 ``executemany`` up to the target
count of ``tokens`` rows, and for the large one 100,000 ``revocations`` rows (live, so
start-up loads every one). Validate reads no table, so the rows matter for start-up and
memory; the revocation sets are what it consults per call. Both servers then run side by
side and the scenarios alternate between them, so drift hits both alike.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fixture, loadgen
from bench.fixture import ChittyAuth, Proc, frame
from chitty.auth.v1 import auth_service_pb2

# Five alternating runs: the 1,000 vs 1,000,000 ratio is within the run-to-run noise of three.
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "4"))
WARMUP_S = 1.0
STREAMS = 64
SMALL_TOKENS = int(os.environ.get("BENCH_SCALE_SMALL", "1000"))
LARGE_TOKENS = int(os.environ.get("BENCH_SCALE_LARGE", "1000000"))
REVOKED = int(os.environ.get("BENCH_SCALE_REVOKED", "100000"))
SIGNED = 1000  # real JWTs per database: the hot token is one, the spread cycles them all
STARTS = 3  # start-ups timed per database; the median is reported
SCALE_MD = fixture.ROOT / "bench" / "SCALE.md"
VALIDATE = "/chitty.auth.v1.AuthService/Validate"
TARGET_RATIO = 0.9  # throughput at LARGE within 10% of SMALL
TARGET_RSS_MB = 300.0
TARGET_START_S = 1.5


@dataclass
class Database:
    """One seeded database and the server running on it."""

    label: str
    tokens: int
    revoked: int
    server: ChittyAuth
    signed: list[str] = field(default_factory=list)
    seed_s: float = 0.0
    starts_s: list[float] = field(default_factory=list)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rss_mb: float = 0.0


def _cli(config: Path, *args: str) -> None:
    argv = [sys.executable, "-m", "chittyauth.cli", "--config", str(config), *args]
    done = subprocess.run(
        argv, env=fixture.child_env(), cwd=fixture.ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"chittyauth {' '.join(args)} failed: {done.stderr[-800:]}")


def _start(server: ChittyAuth) -> float:
    """Starts the server; seconds from spawning the process to health SERVING."""
    env = fixture.child_env()
    env["BENCH_ADMIN_SECRET"] = server.admin_secret
    argv = [sys.executable, "-m", "chittyauth.cli", "--config", str(server.config_path), "serve"]
    began = time.monotonic()
    server.proc = Proc.start(server.proc.name, argv, server.config_path.parent, env)
    asyncio.run(fixture.wait_serving(server))
    return time.monotonic() - began


def _import_s() -> float:
    """Seconds from spawning a fresh interpreter to its having imported the server (the floor
    of any start-up); the interpreter's exit is not counted."""
    code = "import chittyauth.app, chittyauth.cli; print('imported', flush=True); input()"
    began = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        env=fixture.child_env(),
        cwd=fixture.ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.readline()
    took = time.monotonic() - began
    child.communicate("\n", timeout=30)
    return took


def _seed(db: Path, tokens: int, revoked: int) -> None:
    """Bookkeeping rows up to ``tokens`` and ``revoked`` live jti revocations, in bulk."""
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        have = conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
        kid = conn.execute("SELECT kid FROM tokens LIMIT 1").fetchone()
        kid = kid[0] if kid else "key_bench"
        prefix = secrets.token_hex(4)
        missing = max(0, tokens - have)
        conn.execute("BEGIN IMMEDIATE")
        batch = 50_000
        for start in range(0, missing, batch):
            conn.executemany(
                "INSERT INTO tokens (jti, subject, client_id, token_use, session_id, family_id,"
                " kid, issued_at, expires_at) VALUES (?, ?, 'bench-bulk', 'service', '', '',"
                " ?, ?, ?)",
                (
                    (f"at_bulk_{prefix}_{i}", f"svc-bulk-{i % 1000}", kid, now, now + 3600)
                    for i in range(start, min(missing, start + batch))
                ),
            )
        # Revoke bookkeeping tokens (not the signed ones the scenarios validate): every row
        # is live, so start-up must load all of them into the revocation sets.
        conn.executemany(
            "INSERT INTO revocations (kind, value, until, revoked_at) VALUES ('jti', ?, ?, ?)",
            ((f"at_bulk_{prefix}_{i}", now + 3600, now) for i in range(revoked)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def build(workdir: Path, label: str, tokens: int, revoked: int) -> Database:
    sub = workdir / label
    sub.mkdir()
    db_path = sub / "chittyauth.db"
    grpc_port, http_port = fixture.free_port(), fixture.free_port()
    config = fixture.write_config(sub, db_path, grpc_port, http_port)
    _cli(config, "migrate")
    # No process yet: _start spawns one under this name.
    placeholder = Proc(f"chittyauth-{label}", None, sub / "unused.log")  # type: ignore[arg-type]
    server = ChittyAuth(
        placeholder, config, db_path, grpc_port, http_port, secrets.token_urlsafe(40)
    )
    _start(server)  # creates the signing keys
    server.proc.stop()
    began = time.monotonic()
    specs = [
        {"subject": f"svc-{i}", "client_id": "bench-scale", "token_use": "service", "scopes": []}
        for i in range(SIGNED)
    ]
    signed = asyncio.run(fixture.mint_tokens(config, specs))
    _seed(db_path, tokens, revoked)
    database = Database(label, tokens, revoked, server, signed, time.monotonic() - began)
    for _ in range(STARTS):
        database.starts_s.append(_start(server))
        server.proc.stop()
    _start(server)
    return database


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(databases: list[Database], workdir: Path) -> None:
    for database in databases:
        reply = asyncio.run(fixture.validate_once(database.server.target, database.signed[0]))
        if not reply.active:
            raise RuntimeError(f"{database.label}: the hot token does not validate: {reply}")
    for _ in range(RUNS):
        for database in databases:
            target = database.server.target
            hot = frame(
                auth_service_pb2.ValidateRequest(token=database.signed[0]).SerializeToString()
            )
            database.runs.setdefault("hot", []).append(
                loadgen.h2load_grpc(
                    f"http://{target}{VALIDATE}",
                    hot,
                    duration_s=DURATION_S,
                    warmup_s=WARMUP_S,
                    streams=STREAMS,
                )
            )
            bodies = workdir / f"bodies-{database.label}"
            bodies.write_bytes(
                b"".join(
                    frame(auth_service_pb2.ValidateRequest(token=t).SerializeToString())
                    for t in database.signed
                )
            )
            database.runs.setdefault("spread", []).append(
                loadgen.pyload(
                    {
                        "mode": "unary",
                        "target": target,
                        "method": VALIDATE,
                        "bodies": str(bodies),
                        "concurrency": STREAMS,
                        "duration_s": DURATION_S,
                        "warmup_s": WARMUP_S,
                    },
                    workdir,
                )
            )
    for database in databases:
        database.rss_mb = _rss_mb(database.server.proc.pid)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else 0.0


def report(small: Database, large: Database, elapsed: float, imports: list[float]) -> str:
    lines = [
        "### Scale results",
        "",
        f"Written by `make bench-scale` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" in {elapsed:.0f} s; every throughput is the median of {RUNS} runs of"
        f" {DURATION_S:g} s, the two databases alternating; 64 calls in flight.",
        "",
        "| database | tokens rows | live revocations | Validate hot req/s | p99 ms |"
        " Validate spread req/s | p99 ms | start-up to SERVING s (median of 3) | RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in (small, large):
        lines.append(
            f"| {d.label} | {d.tokens:,} | {d.revoked:,} | {_median(d.runs['hot'], 'rps'):,.0f} |"
            f" {_median(d.runs['hot'], 'p99_ms'):.2f} | {_median(d.runs['spread'], 'rps'):,.0f} |"
            f" {_median(d.runs['spread'], 'p99_ms'):.2f} | {statistics.median(d.starts_s):.2f}"
            f" [{min(d.starts_s):.2f}–{max(d.starts_s):.2f}] | {d.rss_mb:.0f} |"
        )
    verdicts = []
    for scenario in ("hot", "spread"):
        ratio = _median(large.runs[scenario], "rps") / max(_median(small.runs[scenario], "rps"), 1)
        met = "met" if ratio >= TARGET_RATIO else "**NOT met**"
        verdicts.append(
            f"- Validate {scenario} at {large.tokens:,} vs {small.tokens:,} tokens:"
            f" {ratio:.2f}x (target >= {TARGET_RATIO}x): {met}"
        )
    rss_met = "met" if large.rss_mb < TARGET_RSS_MB else "**NOT met**"
    verdicts.append(
        f"- RSS at {large.tokens:,}: {large.rss_mb:.0f} MB (< {TARGET_RSS_MB:.0f}): {rss_met}"
    )
    start = statistics.median(large.starts_s)
    start_met = "met" if start < TARGET_START_S else "**NOT met**"
    verdicts.append(
        f"- Start-up to SERVING with {large.revoked:,} live revocations: {start:.2f} s"
        f" (< {TARGET_START_S}): {start_met}"
    )
    lines += ["", *verdicts, ""]
    lines.append(
        f"Seeding (minting {SIGNED:,} signed tokens + bulk rows): {small.seed_s:.1f} s small,"
        f" {large.seed_s:.1f} s large. Start-up is measured from spawning"
        " `python -m chittyauth.cli serve` (interpreter start and imports included) to the first"
        " SERVING answer of grpc.health.v1 Check, polled every 20 ms (20 ms reconnect backoff)."
        " Of that, a fresh"
        f" interpreter importing the server takes {statistics.median(imports):.2f} s here"
        f" [{min(imports):.2f}–{max(imports):.2f}], so the server's own start (store, key ring,"
        " registries, revocation sets, listeners) is the difference:"
        f" {statistics.median(small.starts_s) - statistics.median(imports):.2f} s small,"
        f" {statistics.median(large.starts_s) - statistics.median(imports):.2f} s large."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chittyauth-scale-"))
    databases: list[Database] = []
    try:
        small = build(workdir, "small", SMALL_TOKENS, 0)
        databases.append(small)
        large = build(workdir, "large", LARGE_TOKENS, REVOKED)
        databases.append(large)
        measure(databases, workdir)
        imports = [_import_s() for _ in range(STARTS)]
        text = report(small, large, time.monotonic() - started, imports)
    finally:
        for database in databases:
            database.server.proc.stop()
    SCALE_MD.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
