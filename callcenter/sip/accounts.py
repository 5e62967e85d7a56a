"""Agent SIP accounts, pure: credentials, digest HA1, and the res_pjsip objects
(endpoint, aor, auth) an account becomes in Asterisk, as ARI dynamic-config
field lists.

The password is generated here, shown to the operator once and never stored:
the database keeps the HA1 (MD5 of ``user:realm:password``), which Asterisk 22
takes as ``password_digest = md5:<HA1>`` (res_pjsip auth, since 22.2). The HA1
still opens the account in that realm, so it is a secret too: it is never
logged, and an ``Account``'s repr hides it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from callcenter.constants import CONTEXT_AGENT_PHONES

# An endpoint the service created has the agent id as its account code (CDRs,
# CHANNEL(accountcode)); only such endpoints are ever deleted by a sync. (Not a
# set_var: res_pjsip's astdb wizard does not read channel variables back.)
MARKER_FIELD = "accountcode"
MAX_AGENT_ID = 80  # Asterisk's account code length
ENDPOINT_TECH = "PJSIP"

# A SIP user part we accept: plain, unambiguous in URIs, logs and astdb keys.
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
# Names of objects in pjsip.conf, which an account must not shadow.
RESERVED_PREFIXES = ("trunk", "transport", "carrier", "media-", "anonymous")
PASSWORD_BYTES = 18  # 24 URL-safe characters, 144 bits
# Each account has a second endpoint for the browser softphone (WebRTC: DTLS-SRTP,
# ICE, over wss): <user>-web, with its own AOR and the same credentials. A desk
# phone and the browser cannot share one endpoint (their media differ).
WEB_SUFFIX = "-web"

Fields = list[dict[str, str]]


class AccountError(ValueError):
    """The account cannot be created as asked (bad user name)."""


@dataclass(frozen=True)
class Account:
    """What the database keeps of an agent's SIP account."""

    agent_id: str
    username: str
    realm: str
    ha1: str = field(repr=False)
    display_name: str = ""

    @property
    def endpoint(self) -> str:
        """The dial string routing uses for this agent, e.g. ``PJSIP/1001``."""
        return f"{ENDPOINT_TECH}/{self.username}"


@dataclass(frozen=True)
class Credentials:
    """What a phone needs to register; printed once by ``agents add``."""

    username: str
    password: str = field(repr=False)
    server: str  # host:port

    def as_dict(self) -> dict[str, str]:
        return {"user": self.username, "password": self.password, "server": self.server}


def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise AccountError(
            f"{username!r} cannot be a SIP user name (letters, digits, '_', '.', '-';"
            " at most 40); pass --sip-user"
        )
    if username.lower().startswith(RESERVED_PREFIXES):
        raise AccountError(f"SIP user name {username!r} is reserved for pjsip.conf objects")
    if username.lower().endswith(WEB_SUFFIX):
        raise AccountError(f"SIP user name {username!r} ends like a browser softphone's")
    return username


def web_name(username: str) -> str:
    """The browser softphone's endpoint and AOR of an account."""
    return username + WEB_SUFFIX


def web_endpoint(endpoint: str) -> str | None:
    """``PJSIP/<user>-web`` for an agent whose phone is ``PJSIP/<user>``; None for
    other endpoints (Local channels of simulated agents)."""
    tech, _, user = endpoint.partition("/")
    if tech != ENDPOINT_TECH or not _USERNAME.match(user) or user.endswith(WEB_SUFFIX):
        return None
    return f"{ENDPOINT_TECH}/{web_name(user)}"


def digest_ha1(username: str, realm: str, password: str) -> str:
    """RFC 2617 HA1 for MD5: md5(user:realm:password), hex."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()


def new_account(
    agent_id: str,
    *,
    realm: str,
    server: str,
    username: str | None = None,
    display_name: str = "",
) -> tuple[Account, Credentials]:
    """A fresh account with a random password: (what to store, what to print)."""
    if not agent_id or len(agent_id) > MAX_AGENT_ID:
        raise AccountError(f"an agent id with a SIP account has 1 to {MAX_AGENT_ID} characters")
    user = check_username(username or agent_id)
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    account = Account(agent_id, user, realm, digest_ha1(user, realm, password), display_name)
    return account, Credentials(user, password, server)


def _callerid(account: Account) -> str:
    name = re.sub(r'["<>\\\r\n]', "", account.display_name).strip()
    return f'"{name or account.username}" <{account.username}>'


def _fields(pairs: list[tuple[str, str]]) -> Fields:
    return [{"attribute": name, "value": value} for name, value in pairs]


def auth_fields(account: Account) -> Fields:
    return _fields([
        ("auth_type", "digest"),
        ("username", account.username),
        ("realm", account.realm),
        ("password_digest", f"md5:{account.ha1}"),
    ])


def aor_fields(account: Account) -> Fields:
    # One phone per agent: a new registration replaces the old one. Qualify so
    # that a phone which vanished shows as offline within a minute.
    return _fields([
        ("max_contacts", "1"),
        ("remove_existing", "yes"),
        ("qualify_frequency", "60"),
    ])


def endpoint_fields(account: Account) -> Fields:
    """The phone's endpoint: G.711, RFC 4733, media via Asterisk, no way out."""
    return _fields([
        ("context", CONTEXT_AGENT_PHONES),
        ("allow", "!all,ulaw,alaw"),
        ("dtmf_mode", "rfc4733"),
        ("direct_media", "no"),
        ("rtp_symmetric", "yes"),
        ("force_rport", "yes"),
        ("rewrite_contact", "yes"),
        ("allow_subscribe", "no"),
        ("allow_transfer", "no"),
        ("identify_by", "username"),
        ("auth", account.username),
        ("aors", account.username),
        ("callerid", _callerid(account)),
        ("device_state_busy_at", "1"),
        (MARKER_FIELD, account.agent_id),
    ])


def web_aor_fields() -> Fields:
    return _fields([("max_contacts", "1"), ("remove_existing", "yes"),
                    ("qualify_frequency", "60")])


def web_endpoint_fields(account: Account) -> Fields:
    """The browser softphone's endpoint: WebRTC (DTLS-SRTP, ICE, AVPF, rtcp-mux),
    G.711 u-law, the same credentials and the same way out (none)."""
    return _fields([
        ("context", CONTEXT_AGENT_PHONES),
        ("allow", "!all,ulaw"),
        ("dtmf_mode", "rfc4733"),
        ("webrtc", "yes"),
        ("direct_media", "no"),
        ("allow_subscribe", "no"),
        ("allow_transfer", "no"),
        ("identify_by", "username"),
        ("auth", account.username),
        ("aors", web_name(account.username)),
        ("callerid", _callerid(account)),
        ("device_state_busy_at", "1"),
        (MARKER_FIELD, account.agent_id),
    ])


def objects(account: Account) -> list[tuple[str, str, Fields]]:
    """(kind, id, fields) of everything an account is in Asterisk, in the order to
    write them (an endpoint refers to its auth and AOR)."""
    web = web_name(account.username)
    return [("auth", account.username, auth_fields(account)),
            ("aor", account.username, aor_fields(account)),
            ("endpoint", account.username, endpoint_fields(account)),
            ("aor", web, web_aor_fields()),
            ("endpoint", web, web_endpoint_fields(account))]


# What ARI shows (GET .../dynamic/res_pjsip/<kind>/<id>) for a pushed account:
# Asterisk's own rendering of the values above, for the fields that identify
# the account or may change. Equal = nothing to push.
def expected(account: Account) -> list[tuple[str, str, dict[str, str]]]:
    """(kind, id, the values ARI shows) of every object of the account."""
    web = web_name(account.username)
    shown = _expected(account)
    return [("auth", account.username, shown["auth"]), ("aor", account.username, shown["aor"]),
            ("endpoint", account.username, shown["endpoint"]), ("aor", web, shown["aor"]),
            ("endpoint", web, {"context": CONTEXT_AGENT_PHONES, "webrtc": "true",
                               "auth": account.username, "aors": web,
                               MARKER_FIELD: account.agent_id})]


def _expected(account: Account) -> dict[str, dict[str, str]]:
    return {
        "auth": {
            "auth_type": "digest",
            "username": account.username,
            "realm": account.realm,
            "password_digest": f"md5:{account.ha1}",
        },
        "aor": {"max_contacts": "1", "remove_existing": "true", "qualify_frequency": "60"},
        "endpoint": {
            "context": CONTEXT_AGENT_PHONES,
            "allow": "(ulaw|alaw)",
            "dtmf_mode": "rfc4733",
            "direct_media": "false",
            "rtp_symmetric": "true",
            "identify_by": "username",
            "auth": account.username,
            "aors": account.username,
            "callerid": _callerid(account),
            MARKER_FIELD: account.agent_id,
        },
    }


def matches(want: dict[str, str], fields: object) -> bool:
    """Whether an ARI dynamic-config answer shows every wanted value (the case of
    a digest's algorithm name aside)."""
    for name, value in want.items():
        have = field_value(fields, name)
        if have is None or have.lower() != value.lower():
            return False
    return True


def field_value(fields: object, attribute: str) -> str | None:
    """One attribute of an ARI dynamic-config answer (a list of {attribute, value})."""
    if not isinstance(fields, list):
        return None
    for item in fields:
        if isinstance(item, dict) and item.get("attribute") == attribute:
            value = item.get("value")
            return None if value is None else str(value)
    return None
