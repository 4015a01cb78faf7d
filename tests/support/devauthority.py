"""Run ``chittyauth.devauthority`` as a real subprocess for a test.

The process listens on an ephemeral port on 127.0.0.1 and keeps its data file in a directory
the test owns. ``stop()`` and ``start()`` bring it down and back on the same port with the same
data, which is how tests check that callers fail closed and then recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

from chittyauth.devauthority import AuthorityState, MintedId

_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05


class DevAuthority:
    """One dev-authority subprocess.

    Use as ``async with DevAuthority(tmp_path) as authority:`` or call ``start()``/``stop()``.
    """

    def __init__(
        self, workdir: Path, *, api_key: str | None = None, known_ids: Sequence[str] = ()
    ) -> None:
        self.workdir = workdir
        self.api_key = api_key
        # IDs the authority vouches for from its first start, as if it had minted them.
        self.known_ids = tuple(known_ids)
        self.data_file = workdir / "dev-authority.json"
        self.log_file = workdir / "dev-authority.log"
        self._port_file = workdir / "dev-authority.port"
        self._port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the dev authority has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """The issuer and Cloudflare Access team domain, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def authority_url(self) -> str:
        """The ChittyID authority API base, for ``AuthorityConfig.url``."""
        return f"{self.base_url}/v1"

    @property
    def certs_url(self) -> str:
        return f"{self.base_url}/cdn-cgi/access/certs"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the process (on the previous port after a stop) and wait until it is healthy."""
        if self.running:
            raise RuntimeError("the dev authority is already running")
        self._port_file.unlink(missing_ok=True)
        if self.known_ids and not self.data_file.exists():
            state = AuthorityState(self.data_file)
            for chitty_id in self.known_ids:
                state.minted[chitty_id] = MintedId(entity="PEO", timestamp="", name=None)
            state.save()
        args = [
            sys.executable,
            "-m",
            "chittyauth.devauthority",
            "--host",
            "127.0.0.1",
            "--port",
            str(self._port or 0),
            "--port-file",
            str(self._port_file),
            "--data-file",
            str(self.data_file),
        ]
        if self.api_key:
            args += ["--optional-api-key", self.api_key]
        self._log = self.log_file.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        try:
            self._port = await self._wait_for_port()
            await self._wait_for_health()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> int:
        """SIGTERM the process and wait for it; returns its exit code (0 on a clean stop)."""
        process, self._process = self._process, None
        returncode = 0
        if process is not None:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            returncode = process.returncode if process.returncode is not None else -1
        if self._log is not None:
            self._log.close()
            self._log = None
        return returncode

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> DevAuthority:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def mint_assertion(
        self, email: str, *, audience: str | None = None, ttl_s: int | None = None
    ) -> str:
        """A Cloudflare-Access-style assertion for ``email`` signed by the process's key."""
        body: dict[str, Any] = {"email": email}
        if audience is not None:
            body["audience"] = audience
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        answer = await self.request("POST", "/dev/access/assertion", json=body)
        return str(answer["assertion"])

    async def minted_ids(self) -> list[str]:
        """Every ID the process has minted (to count mints)."""
        answer = await self.request("GET", "/dev/chittyids")
        return [str(chitty_id) for chitty_id in answer["chittyIds"]]

    async def certs(self) -> dict[str, Any]:
        """The published Access certs document."""
        return await self.request("GET", "/cdn-cgi/access/certs")

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One JSON request to the process (with the bearer key if configured); 2xx expected."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(method, f"{self.base_url}{path}", **kwargs) as response,
        ):
            response.raise_for_status()
            answer: dict[str, Any] = await response.json()
            return answer

    async def _wait_for_port(self) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT_S
        while loop.time() < deadline:
            if self._process is None or self._process.returncode is not None:
                raise RuntimeError(f"the dev authority exited during start:\n{self._log_tail()}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(self._port_file.read_text().strip())
            await asyncio.sleep(_POLL_S)
        raise RuntimeError(f"the dev authority did not start in time:\n{self._log_tail()}")

    async def _wait_for_health(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.authority_url}/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(_POLL_S)
        raise RuntimeError(f"the dev authority never became healthy:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except FileNotFoundError:
            return "(no log)"
