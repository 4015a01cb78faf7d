"""The identity flow end to end, against a running ChittyAuth (``make run``).

    .venv/bin/python examples/oauth_flow.py

1. mints a Cloudflare Access-style assertion at the dev authority (``/dev/access/assertion``);
2. signs the person in through the portal (AuthService.Authenticate) -> a portal token;
3. registers a linked app with the dev admin client (or uses ``--client-id/--client-secret``);
4. authorizes the app as that person with PKCE (AuthService.Authorize) -> a code;
5. exchanges the code at the OAuth token endpoint (HTTP ``POST /token``);
6. validates the access token (AuthService.Validate);
7. refreshes it (``POST /token``, grant refresh_token): both tokens rotate;
8. replays the old refresh token once the grace window has passed: refused, and the whole
   family is revoked — the refreshed access token now validates as REVOKED.

The server's grace window is ``tokens.refresh_grace_s`` (10 s by default), so step 8 waits that
long plus a second. To wait less, start the server with a shorter window and say so here:

    CHITTYAUTH_TOKENS__REFRESH_GRACE_S=1 make run
    .venv/bin/python examples/oauth_flow.py --refresh-grace 1

Every step prints what it got; any unexpected answer prints ``FAILED`` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import sys
from pathlib import Path
from typing import Any

import aiohttp

from chitty.auth.client import AsyncAuthClient, ChittyAuthError, ClientCredentials, StaticToken
from chitty.auth.v1 import (
    auth_service_pb2,
    client_pb2,
    client_service_pb2,
    token_pb2,
)

DEFAULT_SECRET_FILE = "var/client-secrets/chittyauth-admin.secret"
REDIRECT_URI = "https://app.example/callback"
SCOPES = ["mcp:read", "cross_sync"]


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
    parser.add_argument("--http", default="127.0.0.1:8080", help="HTTP host:port")
    parser.add_argument(
        "--authority", default="http://127.0.0.1:8090", help="dev authority base URL"
    )
    parser.add_argument("--access-audience", default="chittyauth-dev")
    parser.add_argument("--email", default="", help="who signs in (default: a fresh address)")
    parser.add_argument("--admin-client-id", default="chittyauth-admin")
    parser.add_argument("--admin-secret-file", default=DEFAULT_SECRET_FILE)
    parser.add_argument("--client-id", default="", help="an existing linked app (skips step 3)")
    parser.add_argument("--client-secret", default="")
    parser.add_argument("--redirect-uri", default=REDIRECT_URI)
    parser.add_argument(
        "--refresh-grace",
        type=float,
        default=10.0,
        help="the server's tokens.refresh_grace_s; step 8 waits this plus one second",
    )
    return parser.parse_args(argv)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def token_endpoint(
    http: aiohttp.ClientSession, base: str, app: tuple[str, str], form: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """POST /token with client_secret_basic; the status and the JSON body."""
    async with http.post(
        f"{base}/token", data=form, auth=aiohttp.BasicAuth(app[0], app[1])
    ) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def register_app(args: argparse.Namespace) -> tuple[str, str]:
    if args.client_id:
        return args.client_id, args.client_secret
    admin = ClientCredentials(args.admin_client_id, args.admin_secret)
    async with AsyncAuthClient(args.grpc, admin) as client:
        reply = await client.create_client(
            client_service_pb2.CreateClientRequest(
                client=client_pb2.Client(
                    display_name="oauth_flow example app",
                    kind=client_pb2.CLIENT_KIND_LINKED_APP,
                    confidential=True,
                    redirect_uris=[args.redirect_uri],
                    allowed_scopes=SCOPES,
                    grant_types=[
                        client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
                        client_pb2.GRANT_TYPE_REFRESH_TOKEN,
                    ],
                    token_endpoint_auth_method=client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC,
                )
            )
        )
    return reply.client.client_id, reply.client_secret


async def run(args: argparse.Namespace) -> None:
    base = f"http://{args.http}"
    email = args.email or f"example-{secrets.token_hex(4)}@example.com"
    async with aiohttp.ClientSession() as http, AsyncAuthClient(args.grpc) as anonymous:
        # 1. The assertion Cloudflare Access would put in Cf-Access-Jwt-Assertion.
        async with http.post(
            f"{args.authority}/dev/access/assertion",
            json={"email": email, "audience": args.access_audience},
        ) as response:
            expect(response.status == 200, f"dev authority answered HTTP {response.status}")
            assertion = (await response.json())["assertion"]
        step(1, "Access assertion", f"minted for {email}")

        # 2. Portal login.
        login = await anonymous.authenticate(
            auth_service_pb2.AuthenticateRequest(
                portal=auth_service_pb2.PortalCredential(assertion=assertion, email=email)
            )
        )
        expect(login.token_use == token_pb2.TOKEN_USE_PORTAL, "not a portal token")
        expect(bool(login.chitty_id), "no ChittyID")
        step(2, "portal login", f"chitty_id={login.chitty_id} session={login.session_id}")

        # 3. The linked app.
        app = await register_app(args)
        step(3, "linked app", f"client_id={app[0]}")

        # 4. The person approves it, with PKCE (S256).
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        async with AsyncAuthClient(args.grpc, StaticToken(login.access_token)) as person:
            approval = await person.authorize(
                auth_service_pb2.AuthorizeRequest(
                    response_type="code",
                    client_id=app[0],
                    redirect_uri=args.redirect_uri,
                    scopes=SCOPES,
                    state=state,
                    code_challenge=challenge,
                    code_challenge_method="S256",
                )
            )
        expect(approval.state == state, "state was not echoed")
        expect(approval.redirect_url.startswith(args.redirect_uri), "wrong redirect")
        step(4, "authorize (PKCE S256)", f"code issued, iss={approval.iss}")

        # 5. The app exchanges the code at the token endpoint.
        status, first = await token_endpoint(
            http, base, app,
            {"grant_type": "authorization_code", "code": approval.code,
             "redirect_uri": args.redirect_uri, "code_verifier": verifier},
        )  # fmt: skip
        expect(status == 200, f"code exchange answered {status}: {first.get('error')}")
        expect(bool(first.get("refresh_token")), "no refresh token")
        step(5, "code exchange", f"scope={first['scope']!r} expires_in={first['expires_in']}")

        # 6. Validate the access token.
        verdict = await anonymous.validate(
            auth_service_pb2.ValidateRequest(token=first["access_token"])
        )
        expect(verdict.active, "the access token is not active")
        expect(verdict.claims.chitty_id == login.chitty_id, "the token names someone else")
        expect(verdict.claims.token_use == token_pb2.TOKEN_USE_LINKED_APP, "wrong token use")
        step(6, "validate", f"active, sub={verdict.claims.sub} token_use=linked_app")

        # 7. Refresh: a new access token and a new refresh token.
        status, second = await token_endpoint(
            http,
            base,
            app,
            {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
        expect(status == 200, f"refresh answered {status}: {second.get('error')}")
        expect(
            second["refresh_token"] != first["refresh_token"], "the refresh token did not rotate"
        )
        expect(second["access_token"] != first["access_token"], "the access token did not change")
        step(7, "refresh", "both tokens rotated")

        # 8. A replay of the used refresh token after the grace window revokes the family.
        wait_s = args.refresh_grace + 1.0
        print(f"    waiting {wait_s:g} s for the refresh grace window to pass", flush=True)
        await asyncio.sleep(wait_s)
        status, replay = await token_endpoint(
            http,
            base,
            app,
            {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
        expect(status == 400 and replay.get("error") == "invalid_grant", f"replay got {status}")
        after = await anonymous.validate(
            auth_service_pb2.ValidateRequest(token=second["access_token"])
        )
        reason = token_pb2.InactiveReason.Name(after.inactive_reason)
        expect(not after.active and reason == "INACTIVE_REASON_REVOKED", f"still {reason}")
        status, _ = await token_endpoint(
            http,
            base,
            app,
            {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        )
        expect(status == 400, "the family's newest refresh token still works")
        step(8, "replay after grace", "refused (invalid_grant); family revoked: access REVOKED")
    print("oauth flow complete", flush=True)


def read_admin_secret(args: argparse.Namespace) -> str:
    """The dev admin client's secret, which `make run` writes at its first start."""
    if args.client_id:
        return ""
    secret_file = Path(args.admin_secret_file)
    expect(secret_file.exists(), f"no admin secret at {secret_file} (run `make run` first)")
    return secret_file.read_text(encoding="utf-8").strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.admin_secret = read_admin_secret(args)
        asyncio.run(run(args))
    except (Unexpected, ChittyAuthError, aiohttp.ClientError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
