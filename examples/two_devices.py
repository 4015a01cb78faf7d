"""Two devices of one person keep in step, against a running ChittyAuth (``make run``).

    .venv/bin/python examples/two_devices.py

1. the person signs in through the portal twice — a laptop and a phone, each with its own
   device id and its own gRPC client; both logins join the person's one session;
2. both devices watch the person's sessions (SyncService.WatchSessions);
3. the laptop writes its session state for an MCP server (PutSessionState, version 0 -> 1);
4. the phone's stream shows STATE_CHANGED and the phone reads the new state (GetSessionState);
5. a write from the phone with the stale version 0 is refused: ABORTED, current version named;
6. the phone revokes the session (RevokeSession): both devices' tokens are REVOKED at once
   and the laptop's watch stream ends.

Every step prints what it got; any unexpected answer prints ``FAILED`` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
from collections.abc import AsyncIterator

import aiohttp

from chitty.auth.client import Aborted, AsyncAuthClient, ChittyAuthError, StaticToken
from chitty.auth.v1 import auth_service_pb2, session_pb2, sync_service_pb2, token_pb2

MCP_SERVER = "chittymcp"
EVENT_TIMEOUT_S = 2.0
# An empty cursor watches from the moment the server registers the stream; a write that
# lands before that is not sent. Real clients resume from their last cursor; this script
# simply writes again (with the current version) until the phone's stream is live.
MAX_WRITES = 5


class Unexpected(Exception):
    """The service answered something the flow did not expect."""


def step(number: int, title: str, detail: str) -> None:
    print(f"[{number}] {title}: {detail}", flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Unexpected(message)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grpc", default="127.0.0.1:50051", help="gRPC host:port")
    parser.add_argument(
        "--authority", default="http://127.0.0.1:8090", help="dev authority base URL"
    )
    parser.add_argument("--access-audience", default="chittyauth-dev")
    parser.add_argument("--email", default="", help="who signs in (default: a fresh address)")
    return parser.parse_args(argv)


class Device:
    """One device: its own login, its own gRPC client and its own watch stream."""

    def __init__(
        self, name: str, device_id: str, target: str, login: auth_service_pb2.AuthenticateResponse
    ) -> None:
        self.name = name
        self.device_id = device_id
        self.login = login
        self.session = f"sessions/{login.session_id}"
        self.client = AsyncAuthClient(target, StaticToken(login.access_token))
        self.events: asyncio.Queue[session_pb2.SessionEvent] = asyncio.Queue()
        self.ended: ChittyAuthError | None = None
        self._watch: asyncio.Task[None] | None = None

    def start_watching(self) -> None:
        self._watch = asyncio.create_task(self._follow(), name=f"watch-{self.name}")

    async def _follow(self) -> None:
        stream = self.client.watch_sessions(sync_service_pb2.WatchSessionsRequest())
        try:
            async for item in stream:
                if item.HasField("event"):
                    await self.events.put(item.event)
        except ChittyAuthError as ended:  # the stream of a signed-out device ends
            self.ended = ended
        finally:
            await stream.aclose()

    async def next_event(self, kind: int, timeout_s: float) -> session_pb2.SessionEvent | None:
        """The next event of ``kind`` within ``timeout_s``, else None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(self.events.get(), left)
            except TimeoutError:
                return None
            if event.type == kind:
                return event
        return None

    async def stream_end(self, timeout_s: float) -> ChittyAuthError | None:
        if self._watch is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watch), timeout_s)
        return self.ended

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.client.close()


async def portal_login(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    email: str,
    device_id: str,
    kind: session_pb2.ClientType,
) -> auth_service_pb2.AuthenticateResponse:
    async with http.post(
        f"{args.authority}/dev/access/assertion",
        json={"email": email, "audience": args.access_audience},
    ) as response:
        expect(response.status == 200, f"dev authority answered HTTP {response.status}")
        assertion = (await response.json())["assertion"]
    async with AsyncAuthClient(args.grpc) as anonymous:
        return await anonymous.authenticate(
            auth_service_pb2.AuthenticateRequest(
                portal=auth_service_pb2.PortalCredential(assertion=assertion, email=email),
                device=auth_service_pb2.DeviceHint(
                    device_id=device_id, display_name=device_id, client_type=kind
                ),
            )
        )


@contextlib.asynccontextmanager
async def devices(args: argparse.Namespace, email: str) -> AsyncIterator[tuple[Device, Device]]:
    laptop_id, phone_id = "laptop-" + secrets.token_hex(3), "phone-" + secrets.token_hex(3)
    async with aiohttp.ClientSession() as http:
        laptop_login = await portal_login(args, http, email, laptop_id, session_pb2.CLIENT_TYPE_WEB)
        phone_login = await portal_login(
            args, http, email, phone_id, session_pb2.CLIENT_TYPE_MOBILE
        )
    laptop = Device("laptop", laptop_id, args.grpc, laptop_login)
    phone = Device("phone", phone_id, args.grpc, phone_login)
    try:
        yield laptop, phone
    finally:
        await laptop.close()
        await phone.close()


async def validate(target: str, token: str) -> str:
    async with AsyncAuthClient(target) as anonymous:
        verdict = await anonymous.validate(auth_service_pb2.ValidateRequest(token=token))
    if verdict.active:
        return "ACTIVE"
    return token_pb2.InactiveReason.Name(verdict.inactive_reason).removeprefix("INACTIVE_REASON_")


async def run(args: argparse.Namespace) -> None:
    email = args.email or f"example-{secrets.token_hex(4)}@example.com"
    async with devices(args, email) as (laptop, phone):
        expect(laptop.login.chitty_id == phone.login.chitty_id, "two different people")
        expect(laptop.session == phone.session, "the second login started another session")
        step(1, "two portal logins", f"chitty_id={laptop.login.chitty_id}")
        print(f"    one session {laptop.session} with both devices", flush=True)

        laptop.start_watching()
        phone.start_watching()
        step(2, "both devices watch", "WatchSessions open on the laptop and the phone")

        changed, version = None, 0
        for _ in range(MAX_WRITES):
            written = await laptop.client.put_session_state(
                sync_service_pb2.PutSessionStateRequest(
                    name=laptop.session,
                    mcp_server=MCP_SERVER,
                    data=f'{{"open_tab": "docs", "rev": {version + 1}}}'.encode(),
                    expected_version=version,
                    device_id=laptop.device_id,
                )
            )
            version = written.state.version
            changed = await phone.next_event(
                session_pb2.SESSION_EVENT_TYPE_STATE_CHANGED, EVENT_TIMEOUT_S
            )
            if changed is not None:
                break
        expect(changed is not None, "the phone never saw STATE_CHANGED")
        assert changed is not None
        step(3, "laptop writes state", f"{MCP_SERVER} version {version}")

        expect(changed.name == laptop.session, "the event names another session")
        read = await phone.client.get_session_state(
            sync_service_pb2.GetSessionStateRequest(name=laptop.session, mcp_server=MCP_SERVER)
        )
        expect(read.state.version == version, f"phone read version {read.state.version}")
        step(
            4,
            "phone sees STATE_CHANGED",
            f"version {changed.state_version}, reads {read.state.data.decode()!r}",
        )

        try:
            await phone.client.put_session_state(
                sync_service_pb2.PutSessionStateRequest(
                    name=laptop.session,
                    mcp_server=MCP_SERVER,
                    data=b'{"open_tab": "stale"}',
                    expected_version=version - 1,
                )
            )
            raise Unexpected("a stale write was accepted")
        except Aborted as conflict:
            expect(conflict.reason == "VERSION_CONFLICT", f"reason {conflict.reason}")
            expect(conflict.current_version == version, "wrong current version")
            step(5, "stale write refused", f"ABORTED {conflict.reason}, current_version={version}")

        await phone.client.revoke_session(sync_service_pb2.RevokeSessionRequest(name=phone.session))
        laptop_now = await validate(args.grpc, laptop.login.access_token)
        phone_now = await validate(args.grpc, phone.login.access_token)
        ended = await laptop.stream_end(EVENT_TIMEOUT_S)
        expect(laptop_now == "REVOKED", f"laptop token {laptop_now}")
        expect(phone_now == "REVOKED", f"phone token {phone_now}")
        expect(ended is not None, "the laptop's stream did not end")
        step(6, "RevokeSession", f"laptop token {laptop_now}, phone token {phone_now}")
    print("two devices complete", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(run(args))
    except (Unexpected, ChittyAuthError, aiohttp.ClientError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
