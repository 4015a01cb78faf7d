"""Who may do what to whose data: the one policy table of ChittyAuth.

Every operation — each RPC of the contract and each HTTP route that is not a transcoded RPC —
has one ``Rule`` here, naming

- the principal kinds it accepts (``Kind``),
- the scopes it requires (any one of them; an admin passes),
- its ownership rule (``Owner``): whose data the caller may reach, and
- its rate-limit bucket (an operation of ``domain.ratelimit``; '' for none).

Transports build a request context and call the domain; before a handler runs, the gate asks
``admit`` (kind and scopes, from the token alone); where the data's owner is known only after a
read, the domain asks ``may_reach`` or ``require_owner``. No access decision lives anywhere
else: a new RPC without a row here fails the authorization matrix test.

The model (docs/authz.md says it in prose):

- A **person's own token** (portal or password login) reaches that person's data.
- A **token acting for a person** (a linked app, an MCP server, a token exchange, a token
  issued to a client for a person) reaches that person's data only through the scopes it holds;
  its ``sid`` binds it to a session and grants nothing.
- A **service client** and an **API-key token** reach their own resources and what their scopes
  name; an API key acts for the person who created it, only through its scopes.
- An **admin** (scope ``chittyauth:admin``) reaches everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chittyauth.domain.errors import PermissionDenied
from chittyauth.domain.principal import ADMIN_SCOPE, Principal


class Kind(StrEnum):
    """What kind of caller a principal is, decided from its verified claims."""

    ANONYMOUS = "anonymous"
    # The person's own token: portal (Cloudflare Access) or password login.
    PERSON = "person"
    # A token acting for a person: linked app, MCP server, exchange, issued for a person.
    DELEGATE = "delegate"
    # A client's own token (client_credentials).
    SERVICE = "service"
    # An API key, presented as a bearer credential; it acts for the person who created it.
    API_KEY = "api_key"
    # Any token holding chittyauth:admin.
    ADMIN = "admin"


class Owner(StrEnum):
    """Whose data an operation reaches."""

    # No one's: public, or the credential is checked by the operation itself.
    NONE = "none"
    # The caller's own data: the person's, or for a delegate the person it acts for (with the
    # rule's scope); a service its own. An admin reaches anyone's.
    SELF = "self"
    # Anyone's, for a caller holding the rule's (administrative) scope.
    ANY = "any"


# -- scopes, defined once --------------------------------------------------------------------

# The platform's capability scopes: what linked apps and MCP servers ask a person for.
MCP_READ = "mcp:read"
MCP_WRITE = "mcp:write"
SERVICES = "chittyos:services"
CROSS_SYNC = "cross_sync"
# The person's own data, reached by a token acting for them.
SESSIONS_READ = "sessions:read"
SESSIONS_WRITE = "sessions:write"
API_KEYS_READ = "api_keys:read"
API_KEYS_WRITE = "api_keys:write"
PERMISSIONS_READ = "permissions:read"
PERMISSIONS_WRITE = "permissions:write"
# Machine capabilities.
TOKENS_ISSUE = "tokens:issue"
INTROSPECT = "introspect"
REVOCATIONS_READ = "revocations:read"
API_KEYS_GENERATE = "api_keys:generate"
AUTHORIZATIONS_GRANT = "authorizations:grant"
AUTHORIZATIONS_CHECK = "authorizations:check"
# Administrative scopes: they never pass through consent or a token exchange.
ADMIN = ADMIN_SCOPE
CLIENTS_ADMIN = "clients:admin"
KEYS_ADMIN = "keys:admin"
AUDIT_READ = "audit:read"

SCOPES: dict[str, str] = {
    MCP_READ: "read through the platform's MCP servers (checked by those servers)",
    MCP_WRITE: "act through the platform's MCP servers (checked by those servers)",
    SERVICES: "call ChittyOS services for the person (checked by those services)",
    CROSS_SYNC: "reach every session of the person, not only the one the token is bound to,"
    " and start new sessions",
    SESSIONS_READ: "read the person's sessions, devices and session state",
    SESSIONS_WRITE: "sync, change and end the person's sessions and write session state",
    API_KEYS_READ: "list the person's API keys",
    API_KEYS_WRITE: "create and revoke the person's API keys",
    PERMISSIONS_READ: "list the person's permission grants and check them",
    PERMISSIONS_WRITE: "grant and revoke permissions as the person",
    TOKENS_ISSUE: "issue tokens for a person who consented to this client (IssueToken)",
    INTROSPECT: "introspect any token (RFC 7662) and follow revocations",
    REVOCATIONS_READ: "follow revocations (WatchRevocations)",
    API_KEYS_GENERATE: "create API keys (with api_keys:write when acting for a person)",
    AUTHORIZATIONS_GRANT: "grant permissions on any resource as oneself",
    AUTHORIZATIONS_CHECK: "check another ChittyID's permissions",
    ADMIN: "everything, for anyone",
    CLIENTS_ADMIN: "manage OAuth clients and MCP servers",
    KEYS_ADMIN: "list and rotate signing keys",
    AUDIT_READ: "read and verify the audit log",
}

# Never granted by consent or carried through a token exchange.
ADMIN_SCOPES = frozenset({ADMIN, CLIENTS_ADMIN, KEYS_ADMIN, AUDIT_READ})
# A person's own token may grant these to a linked app (if it holds them itself).
PERSON_SCOPES = (
    MCP_READ, MCP_WRITE, SERVICES, CROSS_SYNC,
    SESSIONS_READ, SESSIONS_WRITE, API_KEYS_READ, API_KEYS_WRITE,
    PERMISSIONS_READ, PERMISSIONS_WRITE,
)  # fmt: skip


# -- kinds -----------------------------------------------------------------------------------

_DELEGATE_USES = frozenset({"linked_app", "mcp_server", "exchange"})
_PERSON_USES = frozenset({"portal", "user"})
API_KEY_CLIENT_PREFIX = "apikey:"


def kind_of(principal: Principal | None) -> Kind:
    """The kind of ``principal``; ANONYMOUS for None."""
    if principal is None:
        return Kind.ANONYMOUS
    if ADMIN in principal.scopes:
        return Kind.ADMIN
    if principal.client_id.startswith(API_KEY_CLIENT_PREFIX):
        return Kind.API_KEY
    if principal.actor or principal.token_use in _DELEGATE_USES:
        return Kind.DELEGATE
    if principal.token_use in _PERSON_USES:
        return Kind.PERSON
    if principal.token_use == "service":
        return Kind.SERVICE
    # An unknown token use is nobody we know: it gets no more than an anonymous caller.
    return Kind.ANONYMOUS


def person_of(principal: Principal) -> str:
    """The ChittyID whose data ``principal`` reaches as its own; '' for a service client."""
    kind = kind_of(principal)
    if kind is Kind.API_KEY:
        return principal.chitty_id
    if kind in (Kind.PERSON, Kind.DELEGATE):
        return principal.chitty_id or principal.subject
    if kind is Kind.ADMIN:
        return principal.chitty_id or principal.subject
    return ""


# -- the table -------------------------------------------------------------------------------

ALL = frozenset(Kind)
AUTHENTICATED = ALL - {Kind.ANONYMOUS}
FOR_A_PERSON = frozenset({Kind.PERSON, Kind.DELEGATE, Kind.API_KEY, Kind.ADMIN})
MACHINES = frozenset({Kind.SERVICE, Kind.DELEGATE, Kind.API_KEY, Kind.ADMIN})


@dataclass(frozen=True, slots=True)
class Rule:
    """How one operation is admitted.

    ``scopes``: one of them is required — of every caller for ``Owner.NONE``/``ANY`` rules, and
    of a caller that is not the person itself for ``Owner.SELF`` rules (a person's own token
    reaches its own data; a delegate or API key only through these scopes). Admins pass.
    """

    operation: str
    kinds: frozenset[Kind]
    scopes: tuple[str, ...] = ()
    owner: Owner = Owner.NONE
    bucket: str = ""
    summary: str = ""


def _rule(
    operation: str,
    kinds: frozenset[Kind],
    *scopes: str,
    owner: Owner = Owner.NONE,
    bucket: str = "",
    summary: str = "",
) -> Rule:
    return Rule(operation, kinds, scopes, owner, bucket, summary)


_AUTH = "/chitty.auth.v1.AuthService/"
_SYNC = "/chitty.auth.v1.SyncService/"
_CLIENTS = "/chitty.auth.v1.ClientService/"
_KEYS = "/chitty.auth.v1.ApiKeyService/"
_PERMS = "/chitty.auth.v1.PermissionService/"
_SIGNING = "/chitty.auth.v1.KeyService/"
_AUDIT = "/chitty.auth.v1.AuditService/"

_RULES: tuple[Rule, ...] = (
    # AuthService: credentials travel in the request body; the operation checks them.
    _rule(f"{_AUTH}Authenticate", ALL, bucket="authenticate",
          summary="anyone with a credential: portal assertion, password, API key,"
          " client credentials, MCP server credentials (with the person's consent)"),
    _rule(f"{_AUTH}Authorize", frozenset({Kind.PERSON}), bucket="authorize",
          summary="the person's own token; it grants only scopes it holds itself"),
    _rule(f"{_AUTH}Exchange", ALL, bucket="exchange",
          summary="an authenticated client (in the request); token exchange by its policy"),
    _rule(f"{_AUTH}Validate", ALL, summary="anyone: the answer is about the token given"),
    _rule(f"{_AUTH}Revoke", AUTHENTICATED, bucket="revoke",
          summary="the token's client or person (RFC 7009 §2.1); others change nothing"),
    _rule(f"{_AUTH}GetJwks", ALL, summary="anyone: public keys"),
    _rule(f"{_AUTH}WatchRevocations", frozenset({Kind.SERVICE, Kind.ADMIN, Kind.DELEGATE,
                                                 Kind.API_KEY, Kind.PERSON}),
          REVOCATIONS_READ, INTROSPECT, owner=Owner.ANY,
          summary="a service client, or revocations:read / introspect"),
    _rule(f"{_AUTH}RegisterAccount", ALL, bucket="register",
          summary="anyone: a password account for a ChittyID the authority knows"),
    _rule(f"{_AUTH}IssueToken", MACHINES, TOKENS_ISSUE, owner=Owner.ANY, bucket="issue",
          summary="tokens:issue, for a person who consented to the caller's client"),
    # SyncService: the person's sessions.
    _rule(f"{_SYNC}SyncSession", FOR_A_PERSON, SESSIONS_WRITE, owner=Owner.SELF,
          summary="the person, or sessions:write (new sessions need cross_sync)"),
    _rule(f"{_SYNC}GetSession", FOR_A_PERSON, SESSIONS_READ, owner=Owner.SELF,
          summary="the person, or sessions:read; the bound session unless cross_sync"),
    _rule(f"{_SYNC}ListSessions", FOR_A_PERSON, SESSIONS_READ, owner=Owner.SELF,
          summary="the person, or sessions:read"),
    _rule(f"{_SYNC}RevokeSession", FOR_A_PERSON, SESSIONS_WRITE, owner=Owner.SELF,
          summary="the person, or sessions:write; the bound session unless cross_sync"),
    _rule(f"{_SYNC}RevokeAllSessions", FOR_A_PERSON, SESSIONS_WRITE, owner=Owner.SELF,
          summary="the person, or sessions:write with cross_sync"),
    _rule(f"{_SYNC}PutSessionState", FOR_A_PERSON, SESSIONS_WRITE, owner=Owner.SELF,
          summary="the person, or sessions:write; the bound session unless cross_sync"),
    _rule(f"{_SYNC}GetSessionState", FOR_A_PERSON, SESSIONS_READ, owner=Owner.SELF,
          summary="the person, or sessions:read; the bound session unless cross_sync"),
    _rule(f"{_SYNC}WatchSessions", FOR_A_PERSON, SESSIONS_READ, owner=Owner.SELF,
          summary="the person, or sessions:read"),
    # ClientService: administration.
    *(
        _rule(f"{_CLIENTS}{name}", AUTHENTICATED, CLIENTS_ADMIN, owner=Owner.ANY,
              summary="clients:admin")
        for name in ("CreateClient", "GetClient", "ListClients", "UpdateClient",
                     "DeleteClient", "RotateClientSecret")
    ),
    # ApiKeyService: the person's API keys.
    _rule(f"{_KEYS}CreateApiKey", FOR_A_PERSON, API_KEYS_WRITE, owner=Owner.SELF,
          summary="the person with api_keys:generate; a delegate also needs api_keys:write"),
    _rule(f"{_KEYS}ListApiKeys", FOR_A_PERSON, API_KEYS_READ, owner=Owner.SELF,
          summary="the person, or api_keys:read"),
    _rule(f"{_KEYS}RevokeApiKey", FOR_A_PERSON, API_KEYS_WRITE, owner=Owner.SELF,
          summary="the person, or api_keys:write"),
    # PermissionService: grants made by and to the person.
    _rule(f"{_PERMS}GrantPermission", FOR_A_PERSON | {Kind.SERVICE}, PERMISSIONS_WRITE,
          owner=Owner.SELF,
          summary="authorizations:grant or grant:{resource}; a delegate also permissions:write"),
    _rule(f"{_PERMS}CheckPermission", AUTHENTICATED, PERMISSIONS_READ, owner=Owner.SELF,
          summary="one's own; another's with authorizations:check"),
    _rule(f"{_PERMS}ListPermissions", FOR_A_PERSON | {Kind.SERVICE}, PERMISSIONS_READ,
          owner=Owner.SELF, summary="one's own grants, or permissions:read"),
    _rule(f"{_PERMS}RevokePermission", FOR_A_PERSON | {Kind.SERVICE}, PERMISSIONS_WRITE,
          owner=Owner.SELF, summary="the grantor, or permissions:write"),
    # KeyService and AuditService: administration.
    _rule(f"{_SIGNING}ListSigningKeys", AUTHENTICATED, KEYS_ADMIN, owner=Owner.ANY,
          summary="keys:admin"),
    _rule(f"{_SIGNING}RotateSigningKey", AUTHENTICATED, KEYS_ADMIN, owner=Owner.ANY,
          summary="keys:admin"),
    _rule(f"{_AUDIT}ListAuditEvents", AUTHENTICATED, AUDIT_READ, owner=Owner.ANY,
          summary="audit:read"),
    _rule(f"{_AUDIT}VerifyAuditLog", AUTHENTICATED, AUDIT_READ, owner=Owner.ANY,
          summary="audit:read"),
)  # fmt: skip

POLICY: dict[str, Rule] = {rule.operation: rule for rule in _RULES}


def rule_for(operation: str) -> Rule:
    """The rule of ``operation``; KeyError for an operation with none (a bug of ours)."""
    return POLICY[operation]


# -- decisions -------------------------------------------------------------------------------


def admit(rule: Rule, principal: Principal | None) -> Kind:
    """Decides what the token alone can decide: the caller's kind and the rule's scopes.

    Returns:
        The caller's kind.

    Raises:
        PermissionDenied: the kind is not accepted (``PRINCIPAL_NOT_ALLOWED``) or a required
            scope is missing (``INSUFFICIENT_SCOPE``).
    """
    kind = kind_of(principal)
    if kind not in rule.kinds:
        raise PermissionDenied(
            f"{kind.value} callers may not call this operation",
            reason="PRINCIPAL_NOT_ALLOWED",
            metadata={"principal_kind": kind.value},
        )
    if kind is Kind.ADMIN or not rule.scopes or principal is None:
        return kind
    if rule.owner is Owner.SELF and kind is Kind.PERSON:
        return kind
    if not any(scope in principal.scopes for scope in rule.scopes):
        raise PermissionDenied(
            f"requires scope {' or '.join(rule.scopes)}",
            reason="INSUFFICIENT_SCOPE",
            metadata={"required_scopes": " ".join(rule.scopes)},
        )
    return kind


def may_reach(principal: Principal, owner: str) -> bool:
    """Whether ``principal`` may reach data that belongs to ChittyID ``owner``.

    Admins reach everyone's; anyone else only the person it is or acts for. Scopes were
    checked by ``admit`` before the operation ran.
    """
    if kind_of(principal) is Kind.ADMIN:
        return True
    own = person_of(principal)
    return bool(own) and own == owner


def require_owner(principal: Principal, owner: str, *, what: str = "this resource") -> None:
    """Raises PermissionDenied (``NOT_OWNER``) unless ``may_reach(principal, owner)``."""
    if not may_reach(principal, owner):
        raise PermissionDenied(f"only the owner or an admin may act on {what}", reason="NOT_OWNER")


def may_reach_session(principal: Principal, owner: str, session_id: str) -> bool:
    """A session: its owner, bound to it by ``sid`` or holding cross_sync; or an admin."""
    if not may_reach(principal, owner):
        return False
    if kind_of(principal) is Kind.ADMIN:
        return True
    return principal.session_id == session_id or CROSS_SYNC in principal.scopes


def grantable(principal: Principal, scopes: tuple[str, ...] | frozenset[str]) -> list[str]:
    """The scopes of ``scopes`` that ``principal`` may not pass on to another party.

    Admin scopes never pass; any other only if the principal holds it itself.
    """
    return [s for s in scopes if s in ADMIN_SCOPES or s not in principal.scopes]


# -- HTTP routes -----------------------------------------------------------------------------
# The routes that are not a transcoded RPC (those answer by their RPC's row above). Keyed
# "HTTP <METHOD> <path>"; ``bucket`` is the rate-limit operation the route charges, per client
# and per true source address, before any other work.

_HTTP = "HTTP "

_HTTP_RULES: tuple[Rule, ...] = (
    _rule(f"{_HTTP}POST /token", ALL, bucket="exchange",
          summary="a client authenticated by its registered method (RFC 6749 §2.3); a public"
          " client only for authorization_code and refresh_token (PKCE); every grant is"
          " charged to the same bucket as gRPC Exchange"),
    _rule(f"{_HTTP}POST /introspect", ALL, bucket="introspect",
          summary="a confidential client (its registered method), or a bearer token with"
          " introspect; the answer is active only for a token may_introspect allows"),
    _rule(f"{_HTTP}POST /revoke", ALL, bucket="revoke",
          summary="a client by its registered method, a public client by its id; only its"
          " own tokens (RFC 7009 §2.1)"),
    _rule(f"{_HTTP}POST /register", ALL, bucket="register",
          summary="anyone under registration_policy open, else the initial access token"),
    _rule(f"{_HTTP}GET /authorize", ALL,
          summary="anyone: the consent page (or the login redirect) for a valid request"),
    _rule(f"{_HTTP}POST /authorize", frozenset({Kind.PERSON}), bucket="authorize",
          summary="the person signed in at the portal, with the consent form's CSRF token"),
    _rule(f"{_HTTP}POST /portal/login", ALL, bucket="authenticate",
          summary="anyone with a Cloudflare Access assertion"),
    _rule(f"{_HTTP}GET /jwks.json", ALL, summary="anyone: public keys"),
    _rule(f"{_HTTP}GET /.well-known/jwks.json", ALL, summary="anyone: public keys"),
    _rule(f"{_HTTP}GET /.well-known/oauth-authorization-server", ALL,
          summary="anyone: RFC 8414 metadata"),
    _rule(f"{_HTTP}GET /openapi.json", ALL, summary="anyone: the API description"),
    _rule(f"{_HTTP}GET /metrics", ALL,
          summary="anyone who reaches the listener: counters without identities (keep the"
          " listener private or filter the path at the proxy)"),
    _rule(f"{_HTTP}GET /healthz", ALL, summary="anyone: SERVING or NOT_SERVING"),
)  # fmt: skip

HTTP_ROUTES: dict[str, Rule] = {rule.operation: rule for rule in _HTTP_RULES}


def http_rule(route: str) -> Rule:
    """The rule of ``route`` ("POST /token"); KeyError for a route with none (a bug of ours)."""
    return HTTP_ROUTES[_HTTP + route]


# -- introspection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Introspector:
    """Who asks about a token: an authenticated client, or the client of a bearer token."""

    client_id: str
    # Other names ``aud`` may address the caller by (an MCP server's server_id).
    names: tuple[str, ...] = ()
    # The client's allowed scopes, or the bearer token's scopes.
    scopes: frozenset[str] = frozenset()


def may_introspect(caller: Introspector, claims: Mapping[str, Any]) -> bool:
    """Whether ``caller`` may learn that a token is active, and its claims (RFC 7662 §4).

    Yes when the caller holds ``introspect`` (or admin), or the token is addressed to it: the
    token's ``client_id`` is the caller, or ``aud`` names it. Otherwise the endpoint answers
    ``{"active": false}``, exactly as for an unknown token, so a linked app cannot probe or
    read the tokens of other clients.
    """
    if INTROSPECT in caller.scopes or ADMIN in caller.scopes:
        return True
    names = {name for name in (caller.client_id, *caller.names) if name}
    if not names:
        return False
    if str(claims.get("client_id", "")) in names:
        return True
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    return isinstance(audiences, list) and any(str(aud) in names for aud in audiences)
