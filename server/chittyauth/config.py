"""Configuration: a TOML file plus ``CHITTYAUTH_*`` environment overrides, read once.

Every setting lives in a frozen dataclass; ``load_config`` builds them and the composition root
passes them down. Nothing reads the environment after start-up. An environment override names
its section and key with a double underscore: ``CHITTYAUTH_GRPC__PORT=50052`` sets
``[grpc] port``; a top-level key is ``CHITTYAUTH_MODE=production``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ENV_PREFIX = "CHITTYAUTH_"


class ConfigError(Exception):
    """A setting is unknown or has a bad value; the message names it."""


@dataclass(frozen=True)
class GrpcConfig:
    """The gRPC listener and its limits."""

    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_streams: int = 1024
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    # A client may ping at most this often without being told to go away.
    min_ping_interval_s: float = 10.0
    # On SIGTERM: health turns NOT_SERVING and calls are still served for drain_delay_s, so
    # load balancers and clients watching health move away; then new calls are refused
    # UNAVAILABLE (not started) and accepted ones get grace_period_s to finish.
    drain_delay_s: float = 2.0
    grace_period_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("drain_delay_s", "grace_period_s"):
            if not 0 <= getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be between 0 and 3600 seconds")


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP/JSON shim, served in the same process."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    forwarded_headers: tuple[str, ...] = (
        "authorization",
        "cf-access-jwt-assertion",
        "cf-access-authenticated-user-email",
        "x-request-id",
    )
    cors_origins: tuple[str, ...] = ()
    # Where GET /authorize sends a browser without a portal session ('' = a 401 page instead);
    # the authorization URL is appended as ``return_to``.
    login_url: str = ""
    # CIDRs of the reverse proxies whose ``X-Forwarded-For`` is believed (rate limits and
    # audit see the caller behind them); from any other peer the header is ignored.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {cidr[:64]!r} is not an IP address or CIDR"
                ) from None


@dataclass(frozen=True)
class StoreConfig:
    """Where durable state lives."""

    path: str = "./var/chittyauth.db"
    busy_timeout_ms: int = 5000
    # While a store fault stops writes, how often a one-row write is retried (see readiness).
    probe_interval_s: float = 1.0


@dataclass(frozen=True)
class TokenConfig:
    """Token issuance and validation."""

    issuer: str = "http://127.0.0.1:8080"
    leeway_s: int = 30
    access_ttl_s: int = 3600
    portal_ttl_s: int = 86400
    mcp_server_ttl_s: int = 7 * 86400
    service_ttl_s: int = 3600
    refresh_ttl_s: int = 30 * 86400
    refresh_grace_s: int = 10
    code_ttl_s: int = 60
    max_token_bytes: int = 16 * 1024
    verified_cache_size: int = 100_000


@dataclass(frozen=True)
class KeyConfig:
    """Signing keys."""

    algorithm: Literal["ES256", "EdDSA", "RS256", "HS256"] = "ES256"
    # Key-encryption key (64 hex characters = 256 bits) that seals private key material.
    # Required in production mode; in development a fixed local key is derived when empty.
    encryption_key: str = ""
    rotation_interval_s: int = 30 * 86400
    # A new key is published this long before it signs, so cached JWKS always know it.
    publish_ahead_s: int = 86400


@dataclass(frozen=True)
class AuthorityConfig:
    """The external ChittyID authority."""

    url: str = "http://127.0.0.1:8090/v1"
    api_key: str = ""
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    cache_ttl_s: float = 60.0
    allow_legacy_ids: bool = False
    breaker_failure_threshold: int = 5
    breaker_reset_s: float = 10.0
    # How often the server probes GET /health, so availability recovers without traffic.
    health_probe_interval_s: float = 5.0


@dataclass(frozen=True)
class PortalConfig:
    """Cloudflare Access in front of the portal."""

    team_domain: str = "http://127.0.0.1:8090"
    audiences: tuple[str, ...] = ("chittyauth-dev",)
    certs_url: str = ""
    portal_url: str = "https://portal.chitty.cc/mcp"
    leeway_s: int = 30
    jwks_refetch_min_interval_s: float = 30.0


@dataclass(frozen=True)
class SessionConfig:
    """Sessions and cross-device sync."""

    max_devices: int = 5
    device_limit_policy: Literal["refuse", "evict"] = "refuse"
    idle_timeout_s: int = 3600
    absolute_lifetime_s: int = 30 * 86400
    max_state_bytes: int = 64 * 1024
    heartbeat_interval_s: float = 15.0
    event_retention_s: int = 7 * 86400
    # Data-encryption key (64 hex characters) for state blobs; derived in development when empty.
    state_encryption_key: str = ""


@dataclass(frozen=True)
class RateLimitConfig:
    """Requests per minute, per client and per source address."""

    enabled: bool = True
    authenticate_per_minute: int = 60
    authorize_per_minute: int = 60
    exchange_per_minute: int = 120
    register_per_minute: int = 5
    # RFC 7662 introspection is a resource server's hot path: generous, but bounded.
    introspect_per_minute: int = 6000
    revoke_per_minute: int = 120
    issue_per_minute: int = 600
    login_failures_before_lockout: int = 5
    lockout_s: int = 300
    # A failed password login answers after base * 2**(earlier failures) seconds (capped).
    login_failure_delay_s: float = 0.25
    login_failure_delay_max_s: float = 4.0
    # Idle buckets are evicted beyond this many, so memory stays bounded.
    max_buckets: int = 100_000


@dataclass(frozen=True)
class OAuthConfig:
    """The browser-facing OAuth endpoints: /authorize, /register, client metadata documents."""

    # /register (RFC 7591): "open" to anyone, "token" with the initial access token below.
    registration_policy: Literal["open", "token"] = "token"
    # The Bearer token /register requires under policy "token" ('' = nobody may register).
    initial_access_token: str = ""
    # How long a consent form (its CSRF token) stays valid.
    consent_ttl_s: int = 600
    # Client ID Metadata Documents: https client_ids fetched at /authorize and /token.
    cimd_enabled: bool = True
    # Development only: fetch documents from loopback hosts (and over http there).
    cimd_allow_loopback: bool = False
    cimd_fetch_timeout_s: float = 5.0
    cimd_max_bytes: int = 64 * 1024
    cimd_cache_entries: int = 1000
    # Extra CA certificates (PEM file) trusted when fetching documents ('' = system store).
    cimd_ca_file: str = ""


@dataclass(frozen=True)
class Config:
    """All settings."""

    mode: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    # Declarative clients (TOML) applied idempotently at start; empty for none.
    clients_file: str = ""
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    keys: KeyConfig = field(default_factory=KeyConfig)
    authority: AuthorityConfig = field(default_factory=AuthorityConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    sessions: SessionConfig = field(default_factory=SessionConfig)
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    oauth: OAuthConfig = field(default_factory=OAuthConfig)

    @property
    def is_production(self) -> bool:
        return self.mode == "production"


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read the TOML file (if any), apply ``CHITTYAUTH_*`` overrides and validate.

    Raises:
        ConfigError: naming the first unknown key or bad value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    _apply_env(raw, os.environ if env is None else env)
    config: Config = _build(Config, raw, "")
    return config


def replace(config: Config, **sections: Any) -> Config:
    """A copy of ``config`` with whole settings or sections replaced (for tests and tools)."""
    return dataclasses.replace(config, **sections)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NON_SETTING_ENV:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        target = raw
        for section in parts[:-1]:
            nested = target.setdefault(section, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"{name}: {section} is not a section")
            target = nested
        target[parts[-1]] = _EnvValue(value)


# Environment variables with the prefix that are not settings (used by tools and the CLI).
_NON_SETTING_ENV = frozenset(
    {
        "CHITTYAUTH_CONFIG",
        # The MCP agent's own credentials (chittyauth.mcp), read by `chittyauth mcp`.
        "CHITTYAUTH_MCP_CLIENT_ID",
        "CHITTYAUTH_MCP_CLIENT_SECRET",
        "CHITTYAUTH_MCP_TARGET",
        "CHITTYAUTH_MCP_RESOURCE",
        "CHITTYAUTH_MCP_ISSUER",
        # The HTTP shim's proof for the gRPC side, handed by `serve --workers N` to its workers.
        "CHITTYAUTH_SHIM_SECRET",
    }
)


class _EnvValue(str):
    """A string from the environment, to be parsed into the field's type."""


def _build(cls: type[Any], raw: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown setting: {dotted}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{dotted}: expected a table of settings")
            values[key] = _build(typing.cast(type[Any], hint), value, f"{dotted}.")
        else:
            values[key] = _coerce(hint, value, dotted)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        # A section's own check (``__post_init__``) names its field: "http.trusted_proxies: …".
        raise ConfigError(f"{prefix}{exc}" if prefix else f"config: {exc}") from exc


def _coerce(hint: Any, value: Any, dotted: str) -> Any:
    origin = typing.get_origin(hint)
    from_env = isinstance(value, _EnvValue)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{dotted}: must be one of {', '.join(map(str, allowed))}")
        return str(value)
    if origin is tuple:
        if from_env:
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{dotted}: expected a list of strings")
        return tuple(value)
    if origin in (typing.Union, types.UnionType):  # pragma: no cover - no optional settings yet
        raise ConfigError(f"{dotted}: unsupported type")
    if hint is bool:
        if from_env:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{dotted}: expected true or false")
    if hint is int:
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{dotted}: expected an integer")
    if hint is float:
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{dotted}: expected a number")
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{dotted}: expected a string")
    raise ConfigError(f"{dotted}: unsupported type")  # pragma: no cover
