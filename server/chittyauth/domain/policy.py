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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chittyauth.domain.errors import (
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    PermissionDenied,
    ScopeNotGrantable,
)
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
    if kind in (Kind.PERSON, Kind.DELEGATE, Kind.ADMIN):
        return principal.chitty_id or principal.subject
    return ""


def acting_for(principal: Principal) -> str:
    """Whose own data ``principal`` reaches: its person, or a service client itself (its
    ``sub``: the grants it made as a client)."""
    if kind_of(principal) is Kind.SERVICE:
        return principal.subject
    return person_of(principal)


# -- the table -------------------------------------------------------------------------------

ALL = frozenset(Kind)
AUTHENTICATED = ALL - {Kind.ANONYMOUS}
FOR_A_PERSON = frozenset({Kind.PERSON, Kind.DELEGATE, Kind.API_KEY, Kind.ADMIN})
MACHINES = frozenset({Kind.SERVICE, Kind.DELEGATE, Kind.API_KEY, Kind.ADMIN})


@dataclass(frozen=True, slots=True)
class Rule:
    """How one operation is admitted.

    ``scopes``: one of them is required of every accepted kind except those in ``unscoped``
    and admins. ``Owner.SELF`` rules leave the person's own token unscoped (a person reaches
    its own data; a delegate or API key only through these scopes).
    """

    operation: str
    kinds: frozenset[Kind]
    scopes: tuple[str, ...] = ()
    owner: Owner = Owner.NONE
    bucket: str = ""
    summary: str = ""
    unscoped: frozenset[Kind] = frozenset()
    # The audit action of a refusal ('' for ``Service.Method``).
    audit: str = ""


def _rule(
    operation: str,
    kinds: frozenset[Kind],
    *scopes: str,
    owner: Owner = Owner.NONE,
    bucket: str = "",
    summary: str = "",
    unscoped: frozenset[Kind] | None = None,
    audit: str = "",
) -> Rule:
    if unscoped is None:
        unscoped = frozenset({Kind.PERSON}) if owner is Owner.SELF else frozenset()
    return Rule(operation, kinds, scopes, owner, bucket, summary, unscoped | {Kind.ADMIN}, audit)


# A service client's grants are its own (it grants and checks as its ``sub``).
_SELF_OR_SERVICE = frozenset({Kind.PERSON, Kind.SERVICE})

_AUTH = "/chitty.auth.v1.AuthService/"
_SYNC = "/chitty.auth.v1.SyncService/"
_CLIENTS = "/chitty.auth.v1.ClientService/"
_KEYS = "/chitty.auth.v1.ApiKeyService/"
_PERMS = "/chitty.auth.v1.PermissionService/"
_SIGNING = "/chitty.auth.v1.KeyService/"
_AUDIT = "/chitty.auth.v1.AuditService/"

# Operations other transports name (the historical HTTP routes are old forms of these RPCs).
AUTHORIZE = f"{_AUTH}Authorize"
ISSUE_TOKEN = f"{_AUTH}IssueToken"
CREATE_API_KEY = f"{_KEYS}CreateApiKey"
GRANT_PERMISSION = f"{_PERMS}GrantPermission"
CHECK_PERMISSION = f"{_PERMS}CheckPermission"
LIST_PERMISSIONS = f"{_PERMS}ListPermissions"

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
    _rule(f"{_AUTH}WatchRevocations", AUTHENTICATED, REVOCATIONS_READ, INTROSPECT,
          owner=Owner.ANY, unscoped=frozenset({Kind.SERVICE}),
          summary="a service client, or revocations:read / introspect"),
    _rule(f"{_AUTH}RegisterAccount", ALL, bucket="register",
          summary="anyone: a password account for a ChittyID the authority knows"),
    _rule(f"{_AUTH}IssueToken", MACHINES, TOKENS_ISSUE, owner=Owner.ANY, bucket="issue",
          summary="tokens:issue, for a person who consented to the caller's client",
          audit="token.issued"),
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
    # PermissionService: grants made by and to the person; a service client acts as itself.
    _rule(f"{_PERMS}GrantPermission", FOR_A_PERSON | {Kind.SERVICE}, PERMISSIONS_WRITE,
          owner=Owner.SELF,
          unscoped=_SELF_OR_SERVICE,
          summary="authorizations:grant or grant:{resource}; a delegate also permissions:write"),
    _rule(f"{_PERMS}CheckPermission", AUTHENTICATED, PERMISSIONS_READ, owner=Owner.SELF,
          unscoped=_SELF_OR_SERVICE,
          summary="one's own; another's with authorizations:check"),
    _rule(f"{_PERMS}ListPermissions", FOR_A_PERSON | {Kind.SERVICE}, PERMISSIONS_READ,
          owner=Owner.SELF, unscoped=_SELF_OR_SERVICE,
          summary="one's own grants, or permissions:read"),
    _rule(f"{_PERMS}RevokePermission", FOR_A_PERSON | {Kind.SERVICE}, PERMISSIONS_WRITE,
          owner=Owner.SELF, unscoped=_SELF_OR_SERVICE,
          summary="the grantor, or permissions:write"),
    # KeyService and AuditService: administration.
    _rule(f"{_SIGNING}ListSigningKeys", AUTHENTICATED, KEYS_ADMIN, owner=Owner.ANY,
          summary="keys:admin"),
    _rule(f"{_SIGNING}RotateSigningKey", AUTHENTICATED, KEYS_ADMIN, owner=Owner.ANY,
          summary="keys:admin", audit="key.rotated"),
    _rule(f"{_AUDIT}ListAuditEvents", AUTHENTICATED, AUDIT_READ, owner=Owner.ANY,
          summary="audit:read"),
    _rule(f"{_AUDIT}VerifyAuditLog", AUTHENTICATED, AUDIT_READ, owner=Owner.ANY,
          summary="audit:read"),
)  # fmt: skip

POLICY: dict[str, Rule] = {rule.operation: rule for rule in _RULES}


def operation_name(operation: str) -> str:
    """``Service.Method`` of an RPC's full name (``/chitty.auth.v1.Service/Method``); an HTTP
    operation as it is."""
    service, _, name = operation.lstrip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}.{name}" if name else operation


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
    if kind in rule.unscoped or not rule.scopes or principal is None:
        return kind
    if not any(scope in principal.scopes for scope in rule.scopes):
        raise PermissionDenied(
            f"requires scope {' or '.join(rule.scopes)}",
            reason="INSUFFICIENT_SCOPE",
            metadata={"required_scopes": " ".join(rule.scopes)},
        )
    return kind


def is_admin(principal: Principal) -> bool:
    """Whether ``principal`` holds the admin scope (it reaches everything)."""
    return ADMIN in principal.scopes


def require_scope(principal: Principal, *any_of: str) -> None:
    """A rule that needs the request's data: one of ``any_of`` is required (admins pass).

    Raises:
        PermissionDenied: reason ``INSUFFICIENT_SCOPE``, naming the scopes.
    """
    if is_admin(principal) or any(scope in principal.scopes for scope in any_of):
        return
    raise PermissionDenied(
        f"requires scope {' or '.join(any_of)}",
        reason="INSUFFICIENT_SCOPE",
        metadata={"required_scopes": " ".join(any_of)},
    )


def may_reach(principal: Principal, owner: str) -> bool:
    """Whether ``principal`` may reach data that belongs to ChittyID ``owner``.

    Admins reach everyone's; anyone else only the person it is or acts for. Scopes were
    checked by ``admit`` before the operation ran.
    """
    if kind_of(principal) is Kind.ADMIN:
        return True
    own = acting_for(principal)
    return bool(own) and own == owner


def require_owner(principal: Principal, owner: str, *, what: str = "this resource") -> None:
    """Raises PermissionDenied (``NOT_OWNER``) unless ``may_reach(principal, owner)``."""
    if not may_reach(principal, owner):
        raise PermissionDenied(f"only the owner or an admin may act on {what}", reason="NOT_OWNER")


def may_reach_session(principal: Principal, owner: str, session_id: str) -> bool:
    """A session: its owner, bound to it by ``sid`` or holding cross_sync; or an admin."""
    if not may_reach(principal, owner):
        return False
    return principal.session_id == session_id or reaches_every_session(principal)


def reaches_every_session(principal: Principal) -> bool:
    """Not only the session a token is bound to: an admin, or a holder of cross_sync."""
    return kind_of(principal) is Kind.ADMIN or CROSS_SYNC in principal.scopes


def may_revoke(principal: Principal, *, client_id: str, subject: str, token_id: str) -> bool:
    """RFC 7009 §2.1 for a bearer-authenticated caller: the token's own client, the token
    itself, the person it was issued to (with their own token), or an admin."""
    kind = kind_of(principal)
    if kind is Kind.ADMIN or principal.jti == token_id:
        return True
    if client_id and principal.client_id == client_id and kind is not Kind.PERSON:
        return True
    return kind is Kind.PERSON and person_of(principal) == subject


def grantable(principal: Principal, scopes: tuple[str, ...] | frozenset[str]) -> list[str]:
    """The scopes of ``scopes`` that ``principal`` may not pass on to another party.

    Admin scopes never pass; any other only if the principal holds it itself.
    """
    return [s for s in scopes if s in ADMIN_SCOPES or s not in principal.scopes]


# -- token exchange --------------------------------------------------------------------------
#
# RFC 8693 by the exchanging client's registered policy (``exchange_audiences``,
# ``exchange_may_impersonate``); docs/authz.md "Token exchange" says it in prose.

# How many exchanges may be stacked on one original token (act nesting and subject links).
MAX_EXCHANGE_DEPTH = 4


def exchange_scopes(
    subject_scopes: Iterable[str], client_allowed: Iterable[str], requested: Sequence[str]
) -> tuple[str, ...]:
    """The scopes an exchanged token carries: subject's ∩ client's allowed ∩ requested.

    An empty request takes the whole intersection. Admin scopes never pass.

    Raises:
        InvalidScope: a requested scope outside the intersection (never dropped silently).
    """
    allowed = frozenset(client_allowed)
    passable = tuple(
        dict.fromkeys(s for s in subject_scopes if s in allowed and s not in ADMIN_SCOPES)
    )
    if not requested:
        return passable
    outside = [s for s in dict.fromkeys(requested) if s not in passable]
    if outside:
        shown = " ".join(outside)[:200]
        raise InvalidScope(
            f"scope not available through this exchange: {shown} (an exchanged token carries"
            " only scopes the subject token holds and the client is allowed, never an admin"
            " scope)",
            metadata={"scope": shown},
        )
    return tuple(dict.fromkeys(requested))


def exchange_audiences(
    client_id: str, allowed: Iterable[str], requested: Sequence[str]
) -> tuple[str, ...]:
    """The audiences of an exchanged token: those requested (``audience`` and ``resource``),
    each one the client's policy names; the client itself when none is requested.

    Raises:
        InvalidTarget: a requested audience or resource the policy does not name (RFC 8693
            §2.2.2).
    """
    if not requested:
        return (client_id,)
    names = frozenset(allowed)
    outside = [a for a in dict.fromkeys(requested) if a not in names]
    if outside:
        shown = outside[0][:200]
        raise InvalidTarget(
            f"this client may not request a token for {shown!r}",
            metadata={"audience": shown},
        )
    return tuple(dict.fromkeys(requested))


def check_actor(client_id: str, actor: Mapping[str, Any], subject: Mapping[str, Any]) -> None:
    """An actor token is accepted when it identifies the exchanging client (its ``sub`` or
    ``client_id`` is the client), or when the subject token's ``may_act`` names its ``sub``
    (and its ``client_id``, when ``may_act`` has one; RFC 8693 §4.4).

    Raises:
        InvalidRequest: reason ``ACTOR_NOT_ALLOWED``.
    """
    actor_sub = str(actor.get("sub", ""))
    actor_client = str(actor.get("client_id", ""))
    if client_id in (actor_sub, actor_client):
        return
    may_act = subject.get("may_act")
    if (
        isinstance(may_act, Mapping)
        and actor_sub
        and str(may_act.get("sub", "")) == actor_sub
        and str(may_act.get("client_id", actor_client)) == actor_client
    ):
        return
    raise InvalidRequest(
        "the actor_token must identify the exchanging client, or a party the subject token's"
        " may_act claim names",
        reason="ACTOR_NOT_ALLOWED",
    )


def exchange_act(
    client_id: str,
    may_impersonate: bool,
    actor: Mapping[str, Any] | None,
    subject_act: Any,
) -> dict[str, Any] | None:
    """The ``act`` claim of an exchanged token (RFC 8693 §4.1).

    Delegation names the actor token's party, or the client itself when there is no actor
    token and its policy does not allow impersonation; a subject's own ``act`` is nested
    inside, so the chain of actors stays visible. Impersonation (allowed by the policy, no
    actor token) adds no actor but keeps the subject's ``act``.

    Raises:
        InvalidRequest: reason ``EXCHANGE_CHAIN_TOO_LONG`` beyond ``MAX_EXCHANGE_DEPTH``.
    """
    prior = dict(subject_act) if isinstance(subject_act, Mapping) else None
    if actor is None and may_impersonate:
        return prior
    if actor is None:
        current: dict[str, Any] = {"sub": client_id}
    else:
        current = {"sub": str(actor.get("sub", ""))}
        if actor.get("client_id"):
            current["client_id"] = str(actor["client_id"])
    if prior is not None:
        current["act"] = prior
    depth, link = 0, current.get("act")
    while isinstance(link, Mapping):
        depth += 1
        link = link.get("act")
    if depth >= MAX_EXCHANGE_DEPTH:
        raise InvalidRequest(
            f"at most {MAX_EXCHANGE_DEPTH} exchanges may be stacked on one token",
            reason="EXCHANGE_CHAIN_TOO_LONG",
        )
    return current


# -- MCP agent -------------------------------------------------------------------------------


class McpTransport(StrEnum):
    """How the MCP agent (``chittyauth mcp``) is reached."""

    # Launched by its operator (a desktop host): the pipe is the operator's own.
    STDIO = "stdio"
    # Streamable HTTP: anyone who can reach the port.
    HTTP = "http"


class McpAuthority(StrEnum):
    """Whose authority a tool call of the agent carries to ChittyAuth."""

    # The agent's own client credentials, configured by the operator who launched it.
    OPERATOR = "operator"
    # The caller's bearer token, forwarded as the call credential.
    CALLER = "caller"


# The agent's HTTP endpoint admits any active token whose audience is the agent's resource URL;
# no scope is needed to reach it, because each tool's RPC is then admitted by its own row above,
# as the caller.
MCP_HTTP_SCOPES: tuple[str, ...] = ()


def mcp_tool_authority(transport: McpTransport, caller_token: str) -> McpAuthority | None:
    """Whose authority a tool call carries; None refuses the call.

    Over stdio the operator's (the process and its credentials are theirs). Over HTTP only the
    caller's, and never the agent's own: a caller without a token is refused, so a tool can
    never lend the operator's (often admin) credentials to whoever reaches the port.
    """
    if transport is McpTransport.STDIO:
        return McpAuthority.OPERATOR
    return McpAuthority.CALLER if caller_token else None


# -- delegation ------------------------------------------------------------------------------
#
# Naming a ChittyID grants nothing. A party other than the person acts for that person only
# through something the person gave: their own token (a token exchange), or a consent they
# recorded for the party's client by approving an authorization request. Only the person's
# own token approves, and it passes on only scopes it holds itself, never an admin scope.

CONSENT_REQUIRED = "CONSENT_REQUIRED"


def may_approve(principal: Principal | None) -> bool:
    """Whether ``principal`` may approve an authorization request (record a consent).

    Only a person's own token (portal or password login) may: a token acting for the person
    (linked app, MCP server, exchange, issued for them — anything with an ``act`` claim), a
    service, an API key or an admin token may not consent for anyone.
    """
    return principal is not None and kind_of(principal) is Kind.PERSON and bool(principal.chitty_id)


def require_approver(principal: Principal | None) -> None:
    """Raises PermissionDenied (``NOT_A_USER``) unless ``may_approve(principal)``."""
    if not may_approve(principal):
        raise PermissionDenied(
            "only the person's own signed-in token may approve an authorization request",
            reason="NOT_A_USER",
            metadata={"principal_kind": kind_of(principal).value},
        )


def require_grantable(principal: Principal, scopes: tuple[str, ...] | frozenset[str]) -> None:
    """Raises ScopeNotGrantable naming the first of ``scopes`` that ``principal`` may not pass on.

    Reasons: ``SCOPE_NOT_GRANTABLE`` for an admin scope (consent never grants one),
    ``SCOPE_NOT_HELD`` for a scope the approving token does not hold itself.
    """
    refused = grantable(principal, scopes)
    if not refused:
        return
    scope = refused[0][:128]
    if scope in ADMIN_SCOPES:
        raise ScopeNotGrantable(
            f"scope {scope!r} is administrative and cannot be granted by consent",
            reason="SCOPE_NOT_GRANTABLE",
            metadata={"scope": scope},
        )
    raise ScopeNotGrantable(
        f"scope {scope!r} is not held by the approving token, so it cannot grant it",
        reason="SCOPE_NOT_HELD",
        metadata={"scope": scope},
    )


def delegated_scopes(
    requested: tuple[str, ...], consented: frozenset[str] | None, *, client_id: str
) -> tuple[str, ...]:
    """The scopes a client may carry when it acts for a person, given that person's consent.

    Args:
        requested: the scopes to issue (already checked against the client's allowed ones).
        consented: what the person consented to for the client; None when they never did.
        client_id: the client, for the message.

    Returns:
        ``requested`` itself; every scope of it is consented.

    Raises:
        PermissionDenied: reason ``CONSENT_REQUIRED`` — no consent, or a scope beyond it.
    """
    if consented is None:
        raise PermissionDenied(
            f"the person has not consented to client {client_id[:128]!r} acting for them",
            reason=CONSENT_REQUIRED,
            metadata={"client_id": client_id[:128]},
        )
    beyond = [s for s in requested if s not in consented]
    if beyond:
        raise PermissionDenied(
            f"scope {beyond[0][:128]!r} is beyond what the person consented to for this client",
            reason=CONSENT_REQUIRED,
            metadata={"client_id": client_id[:128], "scope": beyond[0][:128]},
        )
    return requested


def acts_for_person_without_consent(principal: Principal) -> bool:
    """Whether ``principal`` may issue for a person without that person's consent: an admin."""
    return kind_of(principal) is Kind.ADMIN


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
    _rule(f"{_HTTP}GET /healthz", ALL, summary="anyone: alive (the process answers)"),
    _rule(f"{_HTTP}GET /readyz", ALL,
          summary="anyone: ready or not, and which check fails (store, authority, keys)"),
)  # fmt: skip

# The historical routes (docs/legacy routes in ORIGINAL.md). The old form of an RPC answers by
# that RPC's row, so it cannot reach more than the RPC does; the others have their own rows.
LEGACY_AS_RPC: dict[str, str] = {
    "POST /v1/mcp/linked-app/oauth": AUTHORIZE,
    "POST /v1/tokens/generate": ISSUE_TOKEN,
    "POST /v1/api-keys/generate": CREATE_API_KEY,
    "POST /v1/authorizations/grant": GRANT_PERMISSION,
    "POST /v1/authorizations/check": CHECK_PERMISSION,
    "GET /v1/authorizations/{chitty_id}": LIST_PERMISSIONS,
}

_LEGACY_RULES: tuple[Rule, ...] = (
    _rule(f"{_HTTP}POST /v1/tokens/validate", ALL,
          summary="anyone: the answer is about the token given (as Validate)"),
    _rule(f"{_HTTP}POST /v1/api-keys/validate", ALL,
          summary="anyone: the answer is about the key given (as Validate)"),
    _rule(f"{_HTTP}GET /health", ALL, summary="anyone: the historical health answer"),
    _rule(f"{_HTTP}POST /v1/mcp/portal/authenticate", ALL, bucket="authenticate",
          summary="anyone with a Cloudflare Access assertion (as Authenticate)"),
    _rule(f"{_HTTP}POST /v1/mcp/linked-app/token", ALL, bucket="exchange",
          summary="a client by its credentials (as POST /token)"),
    _rule(f"{_HTTP}POST /v1/mcp/authenticate", ALL, bucket="authenticate",
          summary="an MCP server by its credentials; for a person only with their consent"),
    _rule(f"{_HTTP}POST /v1/mcp/validate", ALL,
          summary="anyone: whether the bearer is an active MCP server token"),
    _rule(f"{_HTTP}POST /v1/auth/register", ALL, bucket="register",
          summary="anyone: a password account (as RegisterAccount)"),
    _rule(f"{_HTTP}POST /v1/auth/login", ALL, bucket="authenticate",
          summary="anyone with an email and password (as Authenticate)"),
    _rule(f"{_HTTP}POST /v1/auth/validate", ALL,
          summary="anyone: whether the bearer is an active password-login token"),
    _rule(f"{_HTTP}POST /v1/auth/logout", AUTHENTICATED,
          summary="the bearer itself, which it revokes"),
)  # fmt: skip

HTTP_ROUTES: dict[str, Rule] = {
    **{rule.operation: rule for rule in (*_HTTP_RULES, *_LEGACY_RULES)},
    **{_HTTP + route: POLICY[operation] for route, operation in LEGACY_AS_RPC.items()},
}


def http_rule(route: str) -> Rule:
    """The rule of ``route`` ("POST /token"; an old form of an RPC answers with the RPC's row);
    KeyError for a route with none (a bug of ours)."""
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


# -- the table as documentation --------------------------------------------------------------


def markdown_table() -> str:
    """The policy table as the Markdown docs/authz.md shows (a test keeps the two equal): the
    RPCs, then the HTTP routes that are not transcoded RPCs."""
    header = [
        "| operation | who | scopes (one of) | whose data | in short | rate limit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rpcs = [_markdown_row(rule.operation.rsplit(".", 1)[-1], rule) for rule in _RULES]
    routes = [
        _markdown_row(name.removeprefix(_HTTP), rule)
        if rule.operation == name
        else f"| `{name.removeprefix(_HTTP)}` | as `{operation_name(rule.operation)}` | | | | |"
        for name, rule in HTTP_ROUTES.items()
    ]
    return "\n".join([*header, *rpcs, "", *header, *routes]) + "\n"


def _markdown_row(name: str, rule: Rule) -> str:
    if rule.kinds == ALL:
        kinds = "anyone"
    elif rule.kinds == AUTHENTICATED:
        kinds = "any caller with a token"
    else:
        kinds = ", ".join(k.value for k in Kind if k in rule.kinds)
    scoped = ", ".join(f"`{s}`" for s in rule.scopes) or "—"
    exempt = sorted(k.value for k in rule.unscoped - {Kind.ADMIN} if k in rule.kinds)
    if rule.scopes and exempt:
        scoped += f" (not for {', '.join(exempt)})"
    return (
        f"| `{name}` | {kinds} | {scoped} | {rule.owner.value} | {rule.summary} |"
        f" {rule.bucket or '—'} |"
    )
