"""Wrappers over the load generators: h2load (gRPC unary), wrk (HTTP) and bench.pyload."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fixture import ROOT, child_env


def ensure_tool(command: str, package: str) -> tuple[bool, str]:
    """Installs the Debian ``package`` when ``command`` is missing; (available, note)."""
    if shutil.which(command):
        return True, ""
    install = f"apt-get update -qq && apt-get install -y -qq {package}"
    done = subprocess.run(
        ["bash", "-c", install], capture_output=True, text=True, timeout=240, check=False
    )
    if done.returncode == 0 and shutil.which(command):
        return True, f"installed {package} with apt-get"
    return False, f"{command} unavailable ({package} did not install: {done.stderr[-200:]})"


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def h2load_grpc(
    url: str,
    body: bytes,
    *,
    duration_s: float,
    warmup_s: float,
    streams: int = 64,
    connections: int = 1,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One h2load run: ``streams`` in flight over ``connections`` (one by default), the framed
    ``body`` each time.

    h2load checks the HTTP status only (always 200 for gRPC); callers verify the grpc-status
    of the same body once beforehand.
    """
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        log_file = Path(tmp) / "requests.log"
        argv = [
            "h2load", "-c", str(connections), "-t", "1", "-m", str(streams // connections),
            "-D", f"{duration_s:g}", f"--warm-up-time={warmup_s:g}",
            "-d", str(body_file),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            *[arg for header in headers for arg in ("-H", header)],
            "--log-file", str(log_file), url,
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + warmup_s + 60, check=False
        )
        out = done.stdout
        rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if done.returncode != 0 or rps is None or counts is None:
            raise RuntimeError(f"h2load failed: {out[-800:]} {done.stderr[-400:]}")
        # Columns: start (us since epoch), HTTP status, elapsed (us).
        latencies = sorted(
            int(line.split("\t")[2]) / 1000
            for line in log_file.read_text().splitlines()
            if line.count("\t") >= 2
        )
    done_n, ok_n = int(counts.group(2)), int(counts.group(3))
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "requests": ok_n,
        "errors": done_n - ok_n,
    }


def wrk_post(
    url: str,
    body: str,
    *,
    duration_s: float,
    connections: int = 64,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One wrk run (one thread, ``connections`` keep-alive connections) POSTing ``body``."""
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text("\n".join(lines) + "\n")
        argv = [
            "wrk", "-t", "1", "-c", str(connections), "-d", f"{duration_s:g}s",
            "--latency", "-s", str(script), url,
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done.returncode != 0 or rps is None:
        raise RuntimeError(f"wrk failed: {out[-800:]} {done.stderr[-400:]}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _wrk_ms(out, "50%"),
        "p99_ms": _wrk_ms(out, "99%"),
        "requests": int(total.group(1)) if total else 0,
        "errors": int(bad.group(1)) if bad else 0,
    }


def _wrk_ms(out: str, label: str) -> float:
    found = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if found is None:
        return 0.0
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    return float(found.group(1)) * scale


def pyload(job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Runs ``python -m bench.pyload`` on ``job`` in its own process; its JSON result."""
    job_file = Path(tempfile.mkstemp(prefix="job-", suffix=".json", dir=workdir)[1])
    job_file.write_text(json.dumps(job))
    timeout = float(job.get("duration_s", 4)) + float(job.get("warmup_s", 1)) + 120
    done = subprocess.run(
        [sys.executable, "-m", "bench.pyload", str(job_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pyload failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
