"""Client authentication (RFC 6749 §2.3): one method table for every endpoint that needs it.

The shape of Authlib's ``rfc6749/authenticate_client.py``: a transport only extracts what the
request presents (``PresentedClient``: the client id, the secret and how they came: the Basic
header, the form body, the id alone) and asks ``authenticate_client`` with the ``Endpoint``
that is asking. Here, and nowhere else, it is decided that

- the presentation is one the endpoint accepts (a public client, ``none``, only where the
  endpoint allows one: /token for authorization_code and refresh_token, which PKCE and the
  client-bound refresh token protect, and /revoke for the client's own tokens);
- the secret matches, compared in constant time, with the same work and the same refusal for an
  unknown client, a public client and a wrong secret (``ClientRegistry.authenticate``);
- the presentation is the client's registered ``token_endpoint_auth_method``: a client
  registered for ``client_secret_basic`` that sends its secret in the form body is refused,
  and the other way round.

Some routes have only one place for a secret (a gRPC request message, the JSON body of a
legacy route): there the caller had no choice to make, so ``SECRET_IN_REQUEST`` stands for
whichever secret method the client registered. Every refusal is ``InvalidClient``
(``invalid_client``, 401 with a ``WWW-Authenticate: Basic`` challenge over HTTP).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from chittyauth.domain.clients import AUTH_BASIC, AUTH_NONE, AUTH_POST
from chittyauth.domain.errors import InvalidClient

# The secret in the request's only place for one: a gRPC message field, a legacy JSON member.
SECRET_IN_REQUEST = "secret_in_request"
SECRET_METHODS = frozenset({AUTH_BASIC, AUTH_POST})
_REFUSAL = "client authentication failed"


class RegisteredClient(Protocol):
    """What authentication reads of a registered client."""

    @property
    def client_id(self) -> str: ...

    @property
    def confidential(self) -> bool: ...

    @property
    def token_endpoint_auth_method(self) -> str: ...


Client = TypeVar("Client", bound=RegisteredClient, covariant=True)


class ClientRegistry(Protocol[Client]):
    """The registry (in memory): ``authenticate`` checks a secret in constant time."""

    def authenticate(self, client_id: str, secret: str) -> Client: ...

    def get(self, client_id: str) -> Client | None: ...


@dataclass(frozen=True, slots=True)
class PresentedClient:
    """The client credentials a request carries, not yet checked."""

    client_id: str
    secret: str = field(repr=False)
    # client_secret_basic | client_secret_post | none | secret_in_request
    method: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint that authenticates clients, and the presentations it accepts."""

    name: str
    methods: frozenset[str]


_ANY_SECRET = frozenset({AUTH_BASIC, AUTH_POST, SECRET_IN_REQUEST})
# /token for client_credentials and token exchange: confidential clients only.
TOKEN_CONFIDENTIAL = Endpoint("token", _ANY_SECRET)
# /token for authorization_code and refresh_token: public clients too (PKCE, bound refresh).
TOKEN_PUBLIC_ALLOWED = Endpoint("token", _ANY_SECRET | {AUTH_NONE})
INTROSPECT = Endpoint("introspect", _ANY_SECRET)
REVOKE = Endpoint("revoke", _ANY_SECRET | {AUTH_NONE})
# An MCP server's login (gRPC Authenticate, the legacy /v1/mcp/authenticate): its secret.
MCP_LOGIN = Endpoint("mcp_login", _ANY_SECRET)


def in_request(client_id: str, secret: str) -> PresentedClient:
    """What a route with one place for credentials presents: its secret, or the id alone."""
    return PresentedClient(client_id, secret, SECRET_IN_REQUEST if secret else AUTH_NONE)


def registered_method(client: RegisteredClient) -> str:
    """The client's ``token_endpoint_auth_method`` (the default for its type if unset)."""
    registered = client.token_endpoint_auth_method
    return registered or (AUTH_BASIC if client.confidential else AUTH_NONE)


# -- the method table ------------------------------------------------------------------------


def _by_secret(
    registry: ClientRegistry[RegisteredClient], presented: PresentedClient
) -> RegisteredClient:
    # Constant time, one refusal for every way it is wrong (ClientRegistry.authenticate).
    return registry.authenticate(presented.client_id, presented.secret)


def _by_id_alone(
    registry: ClientRegistry[RegisteredClient], presented: PresentedClient
) -> RegisteredClient:
    client = registry.get(presented.client_id)
    if client is None or client.confidential or presented.secret:
        raise InvalidClient(_REFUSAL)
    return client


_METHODS: Mapping[
    str, Callable[[ClientRegistry[RegisteredClient], PresentedClient], RegisteredClient]
] = {
    AUTH_BASIC: _by_secret,
    AUTH_POST: _by_secret,
    SECRET_IN_REQUEST: _by_secret,
    AUTH_NONE: _by_id_alone,
}


def _matches_registration(presented: str, registered: str) -> bool:
    if presented == SECRET_IN_REQUEST:
        return registered in SECRET_METHODS
    return presented == registered


def authenticate_client(
    registry: ClientRegistry[Client] | None, presented: PresentedClient | None, endpoint: Endpoint
) -> Client:
    """The registered client behind ``presented``, if ``endpoint`` accepts how it came.

    Raises:
        InvalidClient: no registry yet, no credentials, a presentation the endpoint does not
            accept, an unknown client, a wrong secret, or a method other than the registered
            one. The message names the registered method only once the secret was proven.
    """
    if registry is None or presented is None or presented.method not in endpoint.methods:
        raise InvalidClient(_REFUSAL)
    # The table's functions return the registry's own record type, which is ``Client``.
    client: Client = _METHODS[presented.method](registry, presented)  # type: ignore[assignment]
    registered = registered_method(client)
    if not _matches_registration(presented.method, registered):
        raise InvalidClient(f"this client authenticates with {registered}")
    return client
