"""``chittyauth dev-authority``: a local ChittyID authority and Cloudflare Access stand-in.

It lets the server run on a fresh machine and lets tests talk to a real process:

- ``/v1`` speaks the authority API: ``POST /mint``, ``POST /mint/batch``,
  ``GET /validate/{id}`` (valid only for IDs this process minted), ``GET /health``.
- ``GET /cdn-cgi/access/certs`` publishes its RSA key the way Cloudflare Access does, and
  ``POST /dev/access/assertion`` signs an Access-style assertion for any email (local use and
  tests only: it vouches for whoever asks).
- ``GET /dev/chittyids`` lists what it has minted.

Minted IDs and the RSA key live in one JSON data file, rewritten atomically, so a restart keeps
both. It listens on 127.0.0.1 unless told otherwise and never logs a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hmac
import json
import logging
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from chittyauth.domain.chittyid import ENTITY_TYPES, mint_official, official_checksum_ok

logger = logging.getLogger("chittyauth.devauthority")

DEFAULT_DATA_FILE: Final = "./var/dev-authority.json"
DEFAULT_AUDIENCE: Final = "chittyauth-dev"
API_VERSION: Final = "1"
MAX_BATCH: Final = 100
MAX_ASSERTION_TTL_S: Final = 86_400
_DATA_FORMAT: Final = 1


@dataclass
class MintedId:
    """One ID this authority has issued."""

    entity: str
    timestamp: str
    name: str | None = None


class AuthorityState:
    """The minted IDs and the signing key, persisted together in one JSON file."""

    def __init__(self, data_file: Path) -> None:
        self.data_file = data_file
        self.minted: dict[str, MintedId] = {}
        self._rng = random.SystemRandom()
        loaded = self._load()
        if loaded is None:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.kid = uuid.uuid4().hex
            self.save()
        else:
            self.private_key, self.kid = loaded

    def mint(self, entity: str, name: str | None) -> tuple[str, MintedId]:
        """Mint, record and persist a fresh official-format ID."""
        chitty_id = mint_official(entity, self._rng)
        while chitty_id in self.minted:
            chitty_id = mint_official(entity, self._rng)
        record = MintedId(entity=entity, timestamp=_now_iso(), name=name)
        self.minted[chitty_id] = record
        return chitty_id, record

    def save(self) -> None:
        """Write the whole state atomically: a temp file in the same directory, then replace.

        Synchronous on purpose: the file is small and a single writer keeps it consistent.
        """
        key_pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        document = {
            "format": _DATA_FORMAT,
            "kid": self.kid,
            "private_key_pem": key_pem,
            "minted": {
                chitty_id: {"entity": m.entity, "timestamp": m.timestamp, "name": m.name}
                for chitty_id, m in self.minted.items()
            },
        }
        _write_atomically(self.data_file, json.dumps(document, indent=1, sort_keys=True))

    def _load(self) -> tuple[rsa.RSAPrivateKey, str] | None:
        try:
            document = json.loads(self.data_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        key = serialization.load_pem_private_key(
            document["private_key_pem"].encode("ascii"), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{self.data_file}: the stored key is not an RSA key")
        for chitty_id, record in document.get("minted", {}).items():
            self.minted[chitty_id] = MintedId(
                entity=record["entity"], timestamp=record["timestamp"], name=record.get("name")
            )
        return key, str(document["kid"])


def create_app(
    state: AuthorityState,
    *,
    issuer: Callable[[], str],
    api_key: str | None = None,
) -> web.Application:
    """The web application; ``issuer()`` names the base URL once the port is known."""
    public_jwk = _public_jwk(state)
    certs: dict[str, Any] = {
        "keys": [public_jwk],
        # Cloudflare publishes the same key as X.509 too; verifiers use `keys`.
        "public_cert": {"kid": state.kid, "cert": _self_signed_cert_pem(state)},
    }
    certs["public_certs"] = [certs["public_cert"]]

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "service": "chittyauth-dev-authority", "version": API_VERSION}
        )

    async def mint(request: web.Request) -> web.Response:
        body = await _json_body(request)
        entity, name = _mint_request(body)
        chitty_id, record = state.mint(entity, name)
        state.save()
        logger.info("minted", extra={"chitty_id": chitty_id, "entity": entity})
        return web.json_response(_mint_answer(chitty_id, record))

    async def mint_batch(request: web.Request) -> web.Response:
        body = await _json_body(request)
        requests = body.get("requests")
        if not isinstance(requests, list) or not 0 < len(requests) <= MAX_BATCH:
            raise _bad_request(f"requests must be a list of 1 to {MAX_BATCH} mint requests")
        parsed = [_mint_request(item) for item in requests]
        minted = [state.mint(entity, name) for entity, name in parsed]
        state.save()
        logger.info("minted batch", extra={"count": len(minted)})
        return web.json_response({"chittyIds": [_mint_answer(i, r) for i, r in minted]})

    async def validate(request: web.Request) -> web.Response:
        chitty_id = request.match_info["chitty_id"]
        # The check character is cheap; the ledger is the real answer.
        record = state.minted.get(chitty_id) if official_checksum_ok(chitty_id) else None
        return web.json_response(
            {
                "valid": record is not None,
                "chittyId": chitty_id,
                "entity": record.entity if record else None,
            }
        )

    async def access_certs(request: web.Request) -> web.Response:
        return web.json_response(certs)

    async def access_assertion(request: web.Request) -> web.Response:
        body = await _json_body(request)
        email = body.get("email")
        audience = body.get("audience", DEFAULT_AUDIENCE)
        ttl_s = body.get("ttl_s", 300)
        if not isinstance(email, str) or "@" not in email:
            raise _bad_request("email is required")
        if not isinstance(audience, str) or not audience:
            raise _bad_request("audience must be a non-empty string")
        if type(ttl_s) is not int or not 0 < ttl_s <= MAX_ASSERTION_TTL_S:
            raise _bad_request(f"ttl_s must be an integer from 1 to {MAX_ASSERTION_TTL_S}")
        assertion = _sign_assertion(state, issuer(), email, audience, ttl_s)
        logger.info("assertion issued", extra={"audience": audience, "ttl_s": ttl_s})
        return web.json_response({"assertion": assertion})

    async def list_ids(request: web.Request) -> web.Response:
        ids = sorted(state.minted)
        return web.json_response({"chittyIds": ids, "count": len(ids)})

    app = web.Application(middlewares=[_log_requests, _bearer_guard(api_key)])
    app.add_routes(
        [
            web.get("/v1/health", health),
            web.post("/v1/mint", mint),
            web.post("/v1/mint/batch", mint_batch),
            web.get("/v1/validate/{chitty_id}", validate),
            web.get("/cdn-cgi/access/certs", access_certs),
            web.post("/dev/access/assertion", access_assertion),
            web.get("/dev/chittyids", list_ids),
        ]
    )
    return app


# Open without the key: liveness, and public keys (Cloudflare serves them to anyone).
_OPEN_PATHS: Final = frozenset({"/v1/health", "/cdn-cgi/access/certs"})


def _bearer_guard(api_key: str | None) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if api_key and request.path not in _OPEN_PATHS:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return web.json_response(
                    {"error": "unauthorized"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return guard


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        # Method, path and status only: headers may carry the bearer key.
        logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad_request("body must be JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("body must be a JSON object")
    return body


def _mint_request(body: object) -> tuple[str, str | None]:
    if not isinstance(body, dict):
        raise _bad_request("a mint request must be a JSON object")
    entity = body.get("entity")
    name = body.get("name")
    if entity not in ENTITY_TYPES:
        raise _bad_request(f"entity must be one of {', '.join(sorted(ENTITY_TYPES))}")
    if name is not None and not isinstance(name, str):
        raise _bad_request("name must be a string")
    if "metadata" in body and not isinstance(body["metadata"], dict | None):
        raise _bad_request("metadata must be an object")
    return str(entity), name


def _mint_answer(chitty_id: str, record: MintedId) -> dict[str, str]:
    return {
        "chittyId": chitty_id,
        "entity": record.entity,
        "timestamp": record.timestamp,
        "version": API_VERSION,
    }


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _sign_assertion(
    state: AuthorityState, issuer: str, email: str, audience: str, ttl_s: int
) -> str:
    now = int(time.time())
    claims = {
        "aud": [audience],
        "email": email,
        "exp": now + ttl_s,
        "iat": now,
        "nbf": now,
        "iss": issuer,
        "type": "app",
        "identity_nonce": secrets.token_urlsafe(12),
        # Stable per email, like Cloudflare's user id.
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email.casefold()}")),
        "country": "US",
    }
    return jwt.encode(claims, state.private_key, algorithm="RS256", headers={"kid": state.kid})


def _public_jwk(state: AuthorityState) -> dict[str, str]:
    numbers = state.private_key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": state.kid,
        "alg": "RS256",
        "use": "sig",
        "e": _b64_uint(numbers.e),
        "n": _b64_uint(numbers.n),
    }


def _self_signed_cert_pem(state: AuthorityState) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chittyauth dev authority")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(state.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(state.private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _b64_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates the file 0600: right for a file holding a private key.
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


class _JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chittyauth dev-authority",
        description="Local ChittyID authority and Cloudflare Access stand-in (development only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to bind; 0 picks a free one")
    parser.add_argument("--data-file", default=DEFAULT_DATA_FILE, help="minted IDs and the key")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--issuer", help="base URL for the `iss` of assertions")
    parser.add_argument(
        "--optional-api-key",
        metavar="KEY",
        help="require `Authorization: Bearer KEY` on every route but health and certs",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM or SIGINT, then stop accepting and close connections."""
    state = AuthorityState(Path(args.data_file))
    base_url = ""
    app = create_app(state, issuer=lambda: args.issuer or base_url, api_key=args.optional_api_key)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        base_url = f"http://{_url_host(host)}:{port}".rstrip("/")
        if args.port_file:
            _write_atomically(Path(args.port_file), f"{port}\n")
        logger.info(
            "dev authority listening",
            extra={"url": base_url, "data_file": str(state.data_file), "ids": len(state.minted)},
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        logger.info("dev authority stopping")
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``chittyauth dev-authority`` and ``python -m chittyauth.devauthority``."""
    args = _parse_args(argv)
    _configure_logging()
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A busy port or an unreadable data file: say which, without a traceback.
        logger.error(
            "dev authority failed to start", extra={"error": f"{type(exc).__name__}: {exc}"}
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
