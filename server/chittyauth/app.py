"""The composition root: config -> store -> domain -> gRPC server (+ HTTP shim).

``create_server(config)`` builds a ``Server``; ``serve(config)`` runs one until SIGTERM/SIGINT.

Health: the overall gRPC status ("") follows readiness (``Server.readiness``: the store can
write, the ChittyID authority is reachable, a signing key is loaded); every service is
NOT_SERVING while the store cannot write, and AuthService also while the authority is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2_grpc

from chittyauth.clock import Clock, SystemClock
from chittyauth.config import Config
from chittyauth.domain.changefeed import ChangeFeed
from chittyauth.domain.errors import DomainError, Unavailable
from chittyauth.domain.grants import MachineGrants
from chittyauth.domain.keys import KeyEncryptionKeyError
from chittyauth.domain.oauth import OAuthFlows
from chittyauth.domain.revocation import CHANGE_KIND as REVOCATION_CHANGE
from chittyauth.domain.tokens import TokenService
from chittyauth.http.app import HttpShim
from chittyauth.http.metrics import Metrics
from chittyauth.rpc.audit import AuditServicer
from chittyauth.rpc.auth_service import AuthServicer
from chittyauth.rpc.health import NOT_SERVING, SERVING, Health
from chittyauth.rpc.interceptors import Drain, Gate, InterceptedServer
from chittyauth.rpc.pending import pending_servicer
from chittyauth.rpc.reflection import enable_reflection
from chittyauth.rpc.services import ALL_SERVICES, ServiceSpec
from chittyauth.store.sqlite import SqliteStore
from chittyauth.store.tokens import live_revocations
from chittyauth.workers import reserve_port

log = logging.getLogger(__name__)

# The drain stops the listeners once no caller has arrived for this long (see _until_quiet).
_QUIET_S = 0.3
_QUIET_POLL_S = 0.02

HEALTH_SERVICE = "grpc.health.v1.Health"
AUTH_SERVICE = "chitty.auth.v1.AuthService"

# What each not-yet-built service's UNIMPLEMENTED message points at.
_ARRIVES_WITH = {
    "AuthService": "the tokens and OAuth capabilities",
    "SyncService": "the sessions and sync capability",
    "ClientService": "the OAuth clients capability",
    "ApiKeyService": "the API keys capability",
    "PermissionService": "the permissions capability",
    "KeyService": "the signing keys capability",
    "AuditService": "the audit log capability",
}


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the server can do its work, check by check (``/readyz`` shows them)."""

    store_writable: bool
    authority_reachable: bool
    keys_loaded: bool

    @property
    def ready(self) -> bool:
        return self.store_writable and self.authority_reachable and self.keys_loaded

    def checks(self) -> dict[str, str]:
        return {
            "store": "ok" if self.store_writable else "not writable",
            "authority": "ok" if self.authority_reachable else "unreachable",
            "keys": "ok" if self.keys_loaded else "no active signing key",
        }


class Server:
    """A built ChittyAuth server: ``start()``, then ``stop()``; ports known after start."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        extra_services: Sequence[tuple[Any, Any]] = (),
        worker: int | None = None,
    ) -> None:
        self.config = config
        # This process's index under `serve --workers N` (None: the only process). A worker
        # shares its ports with the others (SO_REUSEPORT), and the supervisor has already done
        # the once-only start-up writes (migrations, first signing keys, the clients file).
        self.worker = worker
        self.clock = clock or SystemClock()
        self.store = SqliteStore(
            config.store.path,
            self.clock,
            busy_timeout_ms=config.store.busy_timeout_ms,
            probe_interval_s=config.store.probe_interval_s,
        )
        self.health = Health()
        self._health_tasks: set[asyncio.Task[None]] = set()
        # One health update at a time, each from a fresh reading: none lands stale on another.
        self._health_lock = asyncio.Lock()
        self.grpc_port = 0
        # The HTTP shim (when [http] enabled) and its port, known after start().
        self.http: HttpShim | None = None
        self.http_port = 0
        # Per instance, so two servers in one process never share counts.
        self.metrics = Metrics()
        self._extra_services = extra_services
        self._grpc: aio.Server | None = None
        # Every served gRPC method by full name (set when the gRPC server is built).
        self.method_table: Mapping[str, Any] = {}
        self._stopped = asyncio.Event()
        self._stopping = False
        # Counts accepted gRPC calls and refuses new ones once the drain stops accepting.
        self.drain = Drain()
        # Set by a second SIGTERM/SIGINT: the drain delay ends at once.
        self._hurry = asyncio.Event()
        self.feed = ChangeFeed(self.store)
        # Servicer instances by service name; a service without one answers UNIMPLEMENTED.
        self.servicers: dict[str, Any] = {}

    @property
    def grpc_target(self) -> str:
        return f"{self.config.grpc.host}:{self.grpc_port}"

    async def start(self) -> None:
        """Opens the store, binds the ports and starts serving.

        Raises:
            OSError: a port is in use (checked before anything is opened, as by ``--workers``).
            DomainError: the store cannot be opened or locked, or another start-up write failed.
            KeyEncryptionKeyError: a bad key-encryption key.

        A failed start releases what it had opened (store, tasks, ports): nothing is left
        running, so the process can exit.
        """
        try:
            await self._start()
        except BaseException:
            await self._release()
            raise

    async def _start(self) -> None:
        if self.worker is None:
            # One process: refuse a port in use before the store is touched. (A worker's
            # supervisor checked, and holds the ports for its workers.)
            self._check_port_free(self.config.grpc.host, self.config.grpc.port)
            if self.config.http.enabled:
                self._check_port_free(self.config.http.host, self.config.http.port)
        await self.store.open()
        start_seq = await self.store.last_change_seq()
        await self._build_domain()
        self.store.add_commit_listener(self.feed.notify)
        await self.feed.start(start_seq)
        self._grpc = self._build_grpc()
        address = f"{self.config.grpc.host}:{self.config.grpc.port}"
        try:
            self.grpc_port = self._grpc.add_insecure_port(address)
        except RuntimeError as exc:  # grpc's "Failed to bind to address"
            raise OSError(f"cannot bind {address}") from exc
        if self.grpc_port == 0:
            raise OSError(f"cannot bind {address}")
        await self._grpc.start()
        self.store.add_writable_listener(lambda _writable: self._refresh_health_soon())
        await self._apply_health()
        if self.config.http.enabled:
            self.http = HttpShim(self)
            self.http_port = await self.http.start(
                self.config.http.host, self.config.http.port, reuse_port=self.worker is not None
            )
        log.info("serving", extra={"grpc": self.grpc_target})

    @staticmethod
    def _check_port_free(host: str, port: int) -> None:
        if port != 0:
            reserve_port(host, port).close()  # raises OSError "cannot bind host:port: ..."

    async def _release(self) -> None:
        """After a failed start: stops whatever had started, quietly, and closes the store."""
        if self.http is not None:
            await self.http.stop()
        if self._grpc is not None:
            await self._grpc.stop(0)
        tasks = [
            task
            for task in (
                getattr(self, "_key_schedule", None),
                getattr(self, "_session_sweeper", None),
                getattr(self, "_authority_probe", None),
                *self._health_tasks,
            )
            if task is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (getattr(self, "authority", None), getattr(self, "access", None)):
            if client is not None:
                await client.close()
        await self.feed.stop()
        await self.store.close()
        self._stopped.set()

    def readiness(self) -> Readiness:
        """The checks behind ``/readyz`` and the overall gRPC health."""
        authority = getattr(self, "authority", None)
        keys = getattr(self, "keys", None)
        keys_loaded = False
        if keys is not None:
            try:
                keys.signer()
                keys_loaded = True
            except Unavailable:
                pass
        return Readiness(
            store_writable=self.store.writable,
            authority_reachable=authority is not None and authority.available,
            keys_loaded=keys_loaded,
        )

    async def _apply_health(self) -> None:
        """Sets every service's status and the overall one from the current readiness."""
        if self._grpc is None:
            return  # not serving yet: start() applies it once the port is up
        async with self._health_lock:
            readiness = self.readiness()
            store_ok = readiness.store_writable
            for spec in ALL_SERVICES:
                serving = store_ok and (
                    spec.full_name != AUTH_SERVICE or readiness.authority_reachable
                )
                await self.health.set(spec.full_name, SERVING if serving else NOT_SERVING)
            await self.health.set("", SERVING if readiness.ready else NOT_SERVING)

    def _refresh_health_soon(self) -> None:
        """``_apply_health`` from a synchronous listener (store, authority)."""
        task = asyncio.get_running_loop().create_task(self._apply_health())
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def stop(self, grace: float | None = None, *, delay: float = 0.0) -> None:
        """Graceful shutdown that cancels no call it accepted (within ``grace``).

        1. Health turns NOT_SERVING for every service, and for ``delay`` seconds (``serve``
           passes ``[grpc] drain_delay_s``) calls are still served, so load balancers and
           clients watching health move away; HTTP responses close their connections.
        2. Stop accepting: the HTTP listener closes; a new gRPC call is refused UNAVAILABLE
           before it starts (reason SHUTTING_DOWN); the streams that only end with the server
           (WatchSessions, WatchRevocations) are ended.
        3. Every accepted HTTP request and gRPC call gets ``grace`` seconds (default
           ``[grpc] grace_period_s``) to finish; then grpc stops (cancelling only what outlived
           the grace) and the store closes.

        A bare ``grpc.aio`` ``server.stop(grace)`` is not enough: it cancels calls it had
        accepted, writes among them, so their callers cannot tell whether they committed.
        """
        if self._stopped.is_set():
            return  # stopped already, or released after a failed start
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.config.grpc.grace_period_s if grace is None else grace
        loop = asyncio.get_running_loop()
        log.info("draining", extra={"delay_s": delay, "grace_s": grace})
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.begin_drain()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), delay)
        deadline = loop.time() + grace
        self.drain.stop_accepting()
        if self.http is not None:
            self.http.stop_accepting()
        sessions = getattr(self, "sessions", None)
        if sessions is not None:
            sessions.hub.close()  # end WatchSessions streams, or they would hold the drain
        revocation_hub = getattr(self, "revocation_hub", None)
        if revocation_hub is not None:
            revocation_hub.close()  # end WatchRevocations streams likewise
        await self._until_quiet(deadline)
        if self.http is not None:
            await self.http.stop()  # first: its requests may still make gRPC calls
        cancelled = await self.drain.wait_idle(deadline - loop.time())
        if self._grpc is not None:
            await self._grpc.stop(max(0.0, deadline - loop.time()))
        log.info(
            "drained",
            extra={"cancelled": cancelled, "refused": self.drain.refused},
        )
        key_schedule = getattr(self, "_key_schedule", None)
        if key_schedule is not None:
            key_schedule.cancel()
            await asyncio.gather(key_schedule, return_exceptions=True)
        session_sweeper = getattr(self, "_session_sweeper", None)
        if session_sweeper is not None:
            session_sweeper.cancel()
            await asyncio.gather(session_sweeper, return_exceptions=True)
        authority_probe = getattr(self, "_authority_probe", None)
        if authority_probe is not None:
            authority_probe.cancel()
            await asyncio.gather(authority_probe, *self._health_tasks, return_exceptions=True)
            await self.authority.close()
            await self.access.close()
        await self.feed.stop()
        await self.store.close()
        self._stopped.set()
        log.info("stopped")

    async def _until_quiet(self, deadline: float) -> None:
        """Waits until no gRPC call is in progress and no call or request has arrived for
        ``_QUIET_S``, or until ``deadline`` (loop time).

        grpc cancels a call it has received but not yet handed to its handler when it stops,
        and an HTTP listener that closes drops requests not yet read: stopping either while
        callers still arrive would turn their refusal into an ambiguous cancellation.
        """
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            last = max(self.drain.last_arrival, self.http.last_refusal if self.http else 0.0)
            if self.drain.in_flight == 0 and time.monotonic() - last >= _QUIET_S:
                return
            await asyncio.sleep(_QUIET_POLL_S)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def hurry(self) -> None:
        """Ends the drain delay now (a second SIGTERM/SIGINT); accepted calls still finish."""
        self._hurry.set()

    async def set_serving(self, service: str, serving: bool) -> None:
        """Marks one service (and the overall "" status) SERVING or NOT_SERVING."""
        await self.health.set(service, SERVING if serving else NOT_SERVING)

    def _build_grpc(self) -> aio.Server:
        grpc_config = self.config.grpc
        server = aio.server(
            options=[
                ("grpc.max_send_message_length", grpc_config.max_message_bytes),
                ("grpc.max_receive_message_length", grpc_config.max_message_bytes),
                ("grpc.max_concurrent_streams", grpc_config.max_concurrent_streams),
                ("grpc.keepalive_time_ms", int(grpc_config.keepalive_time_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(grpc_config.keepalive_timeout_s * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                (
                    "grpc.http2.min_ping_interval_without_data_ms",
                    int(grpc_config.min_ping_interval_s * 1000),
                ),
                # Share the port only with the other workers, never with a process by accident.
                ("grpc.so_reuseport", 0 if self.worker is None else 1),
            ],
        )
        # Every method handler is wrapped once at registration (request id, credentials,
        # errors, metrics) rather than by a per-call grpc interceptor: same behaviour, less
        # work per RPC.
        gate = Gate(lambda: getattr(self, "tokens", None), self.store)
        target: Any = InterceptedServer(server, self.metrics.observe_rpc, gate, self.drain)
        self.method_table = target.methods
        for spec in ALL_SERVICES:
            spec.add(self._servicer_for(spec), target)
        for servicer, add in self._extra_services:
            add(servicer, target)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, target)
        names = [spec.full_name for spec in ALL_SERVICES]
        enable_reflection([*names, HEALTH_SERVICE], target)
        return server

    async def _build_domain(self) -> None:
        """Builds the domain services over the open store and their servicers."""
        # Signing keys (first: the token service signs with them). A bad KEK stops start-up.
        from chittyauth.domain.keys import CHANGE_PREFIX, KeyRing
        from chittyauth.rpc.keys import DeferredResolver, KeyServicer

        self.keys = KeyRing(self.store, self.clock, self.config)
        await self.keys.load()
        if self.worker is None:  # a worker's supervisor made them before it started
            await self.keys.ensure_keys()
        self.feed.subscribe((CHANGE_PREFIX,), self.keys.on_changes)
        self.servicers["KeyService"] = KeyServicer(
            self.keys, DeferredResolver(lambda: getattr(self, "tokens", None))
        )
        self._key_schedule = asyncio.create_task(self.keys.run_schedule(), name="key-schedule")

        # Tokens and revocation: the principal resolver of every RPC; no I/O when validating.
        self.tokens = TokenService(self.config.tokens, self.keys, self.clock)
        async with self.store.read() as reader:
            self.tokens.revocations.load(await live_revocations(reader, self.clock.now()))
        self.feed.subscribe((REVOCATION_CHANGE,), self.tokens.revocations.apply)
        self.servicers["AuditService"] = AuditServicer(self.store, self.tokens)
        self.grants = MachineGrants(self.store, self.tokens)

        # OAuth clients and API keys: in-memory registries for the hot path, kept current from
        # the change log; the clients file is applied before the server takes calls.
        from chittyauth.clients_file import apply_clients_file, secrets_dir_for
        from chittyauth.domain.apikeys import ApiKeyAdmin, ApiKeyRegistry
        from chittyauth.domain.clients import ClientAdmin, ClientRegistry
        from chittyauth.rpc.apikeys import ApiKeyServicer
        from chittyauth.rpc.clients import ClientServicer

        self.clients = ClientRegistry(self.store)
        await self.clients.load()
        self.feed.subscribe(("client.",), self.clients.on_changes)
        self.api_keys = ApiKeyRegistry(self.store)
        await self.api_keys.load()
        self.feed.subscribe(("apikey.",), self.api_keys.on_changes)
        self.grants.clients = self.clients
        self.tokens.api_keys = self.api_keys
        client_admin = ClientAdmin(self.store, self.clients, revoker=self.tokens)
        self.client_admin = client_admin  # the HTTP shim's /register creates clients with it
        if self.config.clients_file and self.worker is None:  # else applied by the supervisor
            await apply_clients_file(
                self.config.clients_file,
                client_admin,
                self.clients,
                secrets_dir=secrets_dir_for(self.config.store.path),
            )
        self.servicers["ClientService"] = ClientServicer(client_admin, self.tokens)
        api_key_admin = ApiKeyAdmin(
            self.store,
            self.api_keys,
            revoker=self.tokens,
            allow_legacy_ids=self.config.authority.allow_legacy_ids,
        )
        self.servicers["ApiKeyService"] = ApiKeyServicer(api_key_admin, self.tokens)
        self.api_key_admin = api_key_admin  # the HTTP shim's /v1/api-keys/generate uses it

        # OAuth 2.1 flows, and the AuthService in front of every grant.
        self.oauth = OAuthFlows(
            self.store, self.tokens, self.clients, self.config.tokens, self.clock,
            api_keys=api_key_admin,
        )  # fmt: skip
        # WatchRevocations: one feed subscriber fans revocations out to verifier streams.
        from chittyauth.rpc.revocations import RevocationHub

        self.revocation_hub = RevocationHub(self.store, self.clock)
        self.revocation_hub.attach(self.feed)
        self.servicers["AuthService"] = AuthServicer(
            self.store, self.tokens, self.grants, self.keys, self.oauth,
            revocations=self.revocation_hub,
        )  # fmt: skip

        # Sessions and cross-device sync: one feed subscriber fans out to WatchSessions
        # streams; a background sweeper expires idle and over-age sessions.
        from chittyauth.domain.sessions import open_session_service
        from chittyauth.rpc.sync import SyncServicer

        self.sessions = await open_session_service(
            self.store, self.clock, self.config, self.feed, revoker=self.tokens
        )
        self.servicers["SyncService"] = SyncServicer(self.sessions, self.tokens)
        self._session_sweeper = asyncio.create_task(
            self.sessions.run_sweeper(), name="session-sweeper"
        )

        # Identity sources: the ChittyID authority (fail closed; its availability drives the
        # AuthService health status) and Cloudflare Access; then the people and MCP server
        # logins, rate limits, and the PermissionService.
        await self._build_identity()

    async def _build_identity(self) -> None:
        from chittyauth.domain.accounts import AccountLogins, IdentityFlows
        from chittyauth.domain.permissions import PermissionRegistry
        from chittyauth.domain.portal import McpServerLogins, PortalLogins
        from chittyauth.domain.ratelimit import RateLimiter
        from chittyauth.identity.access import AccessVerifier
        from chittyauth.identity.authority import AuthorityClient
        from chittyauth.rpc.permissions import PermissionServicer

        self.authority = AuthorityClient(self.config.authority)
        await self.authority.start()
        self.access = AccessVerifier(self.config.portal, clock=self.clock.now)
        await self.access.start()
        self.authority.add_listener(lambda _available: self._refresh_health_soon())
        self._authority_probe = asyncio.create_task(self._probe_authority(), name="authority-probe")
        self.identity = IdentityFlows(
            portal=PortalLogins(
                self.store, self.tokens, self.sessions, self.authority, self.access,
                portal_url=self.config.portal.portal_url,
            ),
            accounts=AccountLogins(
                self.store, self.tokens, self.sessions, self.authority,
                self.config.rate_limits, self.clock,
            ),
            mcp_servers=McpServerLogins(self.store, self.tokens, self.clients, self.authority),
            limiter=RateLimiter(self.config.rate_limits, self.clock),
        )  # fmt: skip
        self.servicers["AuthService"].identity = self.identity
        from chittyauth.domain.issuance import TokenIssuer

        self.servicers["AuthService"].issuer = TokenIssuer(self.store, self.tokens, self.authority)
        self.api_key_admin.authority = self.authority
        self.permissions = PermissionRegistry(self.store, self.authority, self.clock)
        self.servicers["PermissionService"] = PermissionServicer(self.permissions, self.tokens)

    async def _probe_authority(self) -> None:
        """Probes the authority and keeps health in step (also after start); each round also
        re-reads the rest of readiness (a signing key may have gone or come)."""
        while True:
            await self.authority.check_health()
            await self._apply_health()
            await asyncio.sleep(self.config.authority.health_probe_interval_s)

    def _servicer_for(self, spec: ServiceSpec) -> Any:
        name = spec.descriptor.name
        servicer = self.servicers.get(name)
        if servicer is not None:
            return servicer
        return pending_servicer(spec.base, spec.descriptor, _ARRIVES_WITH[name])()


def create_server(
    config: Config, *, clock: Clock | None = None, worker: int | None = None
) -> Server:
    """Builds a server from config; nothing is opened or bound until ``start()``."""
    return Server(config, clock=clock, worker=worker)


async def serve(config: Config, *, worker: int | None = None) -> int:
    """Runs a server until SIGTERM or SIGINT, then shuts it down gracefully.

    Args:
        worker: this process's index under ``serve --workers N`` (see ``Server.worker``).
    """
    server = create_server(config, worker=worker)
    try:
        await server.start()  # a failed start has released everything it opened
    except KeyEncryptionKeyError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2
    except (OSError, grpc.RpcError, DomainError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            server.hurry()  # a second signal: skip what is left of the drain delay
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    await server.stop(delay=config.grpc.drain_delay_s)
    return 0
