"""Secrets out of what is printed or logged: DSN passwords, URL credentials.

``mask_dsn`` hides the password of a PostgreSQL DSN in every form libpq and
asyncpg accept (URL with ``user:password@``, URL with ``?password=``, and the
keyword/value form ``host=x password=y``, quoted or not) and leaves the rest
readable. ``safe_url`` drops credentials and the query from a URL (ARI's
websocket). ``redact`` replaces known secret values inside any text (an error
message that may quote a setting).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

_URL_DSN = re.compile(r"^\s*postgres(?:ql)?://", re.IGNORECASE)
# In a URL's query: password=... and sslpassword=... (the key file's passphrase).
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:ssl)?password=)(?P<value>[^&#]*)", re.IGNORECASE)
# Keyword/value form: a bare value runs to the next blank; a quoted one to the
# closing quote (backslash escapes inside), or to the end when it is unclosed.
_KV_PASSWORD = re.compile(
    r"(?P<key>(?<![\w-])(?:ssl)?password\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*(?:'|\\?$)|\S+)",
    re.IGNORECASE,
)


def _userinfo_password_span(dsn: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host`` is, if there is one.

    The credentials end at the last '@' before the query, so an unescaped '@',
    ':' or '/' inside the password is still hidden (libpq and urllib disagree on
    such DSNs; hiding a little too much is the safe side).
    """
    start = dsn.index("://") + 3
    end = len(dsn)
    for stop in ("?", "#"):
        found = dsn.find(stop, start)
        if found != -1:
            end = min(end, found)
    at = dsn.rfind("@", start, end)
    if at == -1:
        return None
    colon = dsn.find(":", start, at)
    if colon == -1:
        return None
    return colon + 1, at


def _password_spans(dsn: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    if _URL_DSN.match(dsn):
        userinfo = _userinfo_password_span(dsn)
        if userinfo is not None:
            spans.append(userinfo)
        pattern = _QUERY_PASSWORD
    else:
        pattern = _KV_PASSWORD
    spans += [m.span("value") for m in pattern.finditer(dsn)]
    return sorted(s for s in spans if s[1] > s[0])


def mask_dsn(dsn: str) -> str:
    """``dsn`` with every password replaced by ``***``; user, hosts, database and
    other options stay readable."""
    out, last = [], 0
    for start, end in _password_spans(dsn):
        if start < last:
            continue
        out += [dsn[last:start], MASK]
        last = end
    out.append(dsn[last:])
    return "".join(out)


def dsn_passwords(dsn: str) -> list[str]:
    """The passwords written in ``dsn`` (as written, and decoded: percent-escapes in
    a URL, quotes in the keyword/value form), for ``redact``."""
    found: list[str] = []
    for start, end in _password_spans(dsn):
        raw = dsn[start:end]
        found.append(raw)
        if raw.startswith("'"):
            found.append(re.sub(r"\\(.)", r"\1", raw.strip("'")))
        else:
            found.append(unquote(raw))
    return [p for p in dict.fromkeys(found) if p]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each non-empty secret replaced by ``***`` (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/?#\s@]*@", re.IGNORECASE)
_QUERY = re.compile(r"\?[^\s#'\"]*")


def safe_url(url: object) -> str:
    """A URL for a log line: without user, password, query or fragment."""
    text = _USERINFO.sub(r"\g<scheme>", str(url))
    return _QUERY.sub("", text.split("#", 1)[0])


def scrub_urls(text: str) -> str:
    """Credentials and queries out of every URL inside ``text`` (an exception's
    message often quotes the URL it failed on)."""
    text = _USERINFO.sub(r"\g<scheme>", text)
    return re.sub(r"(?P<url>[a-z][a-z0-9+.-]*://[^\s'\"?]*)\?[^\s'\"]*",
                  r"\g<url>", text, flags=re.IGNORECASE)
