"""Roles and access rules, without I/O.

Every route of the web declares an ``Access``; a route without one is refused
(deny by default). An agent sees only what belongs to their own calls: the
queries take ``own_agent(principal)`` as a filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    AGENT = "agent"
    QA = "qa"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.QA, Role.SUPERVISOR, Role.ADMIN})
MANAGERS = frozenset({Role.SUPERVISOR, Role.ADMIN})
ORIGINALS = MANAGERS  # may_see_originals
LANGUAGES = ("zh-CN", "en")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10


@dataclass(frozen=True)
class Principal:
    """The signed-in user of one request."""

    user_id: int
    username: str
    role: Role
    agent_id: str | None = None
    display_name: str = ""
    language: str = "zh-CN"

    def is_(self, *roles: Role) -> bool:
        return self.role in roles


@dataclass(frozen=True)
class Access:
    """Who may use a route. ``roles`` None: anyone, signed in or not.
    ``loopback_anonymous``: also anyone connecting from this machine (metrics)."""

    roles: frozenset[Role] | None
    loopback_anonymous: bool = False

    @property
    def public(self) -> bool:
        return self.roles is None


PUBLIC = Access(None)
SIGNED_IN = Access(ALL_ROLES)


def allow(*roles: Role) -> Access:
    return Access(frozenset(roles))


class Decision(StrEnum):
    ALLOW = "allow"
    SIGN_IN = "sign_in"  # 401, or a redirect to the sign-in page
    FORBIDDEN = "forbidden"  # 403


def decide(access: Access, principal: Principal | None, *, loopback: bool) -> Decision:
    if access.public or (access.loopback_anonymous and loopback and principal is None):
        return Decision.ALLOW
    if principal is None:
        return Decision.SIGN_IN
    assert access.roles is not None
    return Decision.ALLOW if principal.role in access.roles else Decision.FORBIDDEN


def own_agent(principal: Principal) -> str | None:
    """The agent whose calls alone this user may see; None: every call."""
    if principal.role is Role.AGENT:
        # An unlinked agent user sees nothing: no call has an empty agent id (a
        # NUL would be safer still, but PostgreSQL text refuses it).
        return principal.agent_id or ""
    return None


def may_hear(principal: Principal, call_agent_id: str | None) -> bool:
    """Recordings: QA, supervisors, admins, and the agent of that call."""
    if principal.role in STAFF:
        return True
    return principal.agent_id is not None and principal.agent_id == call_agent_id


def may_see_originals(principal: Principal) -> bool:
    """Personal numbers (mobile, identity and bank card numbers) as the caller said
    them, in transcripts and recordings: supervisors and admins. Everyone else who
    may see a call gets them masked, and hears the muted copy."""
    return principal.role in ORIGINALS


def may_change_agent(principal: Principal, agent_id: str) -> bool:
    """Agent state (log in, pause...): supervisors and admins any, an agent their own."""
    return principal.role in MANAGERS or principal.agent_id == agent_id


def password_problem(password: str, username: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    if username and username.lower() in password.lower():
        return "must not contain the user name"
    if len(set(password)) < 5:
        return "too few different characters"
    return None
