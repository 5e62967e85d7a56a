"""Progress notices to the caller, through a pluggable notifier.

The lifecycle emits ``Notify`` commands; ``notice_from`` turns one into a
``Notice`` (zh-CN text from ``notices.yaml``) and a ``Notifier`` sends it:

- ``LogNotifier`` (the default): one log line, the phone masked to its last 4 digits;
- ``SmsGatewayNotifier``: POST ``{"to", "text", "ref"}`` with a bearer token;
- ``WebhookNotifier``: POST the notice, signed ``X-Signature: sha256=<hmac>`` over
  the exact body with a shared secret.

A send that failed raises ``PermanentNotifyError`` (a 4xx: sending the same
notice again will not help) or ``TransientNotifyError`` (a 5xx, 408, 425 or 429,
a timeout, no connection: the job queue retries it later). ``ref`` (ticket
number and kind) lets a gateway drop a retried duplicate. Secrets (the token,
the shared secret) are never in a log line, a repr or an error's message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog
import yaml

from callcenter.ari.client import TRANSPORT_ERRORS, describe_transport_error
from callcenter.logs import escape_controls
from callcenter.redact import redact, safe_url
from callcenter.tickets.lifecycle import NOTICE_KINDS, Notify

NOTICES_FILE = Path(__file__).with_name("notices.yaml")
NOTIFIER_KINDS = ("log", "sms", "webhook")
SIGNATURE_HEADER = "X-Signature"
JSON_TYPE = "application/json; charset=utf-8"
# 4xx answers that mean "later", not "never": timeout, too early, rate limited.
TRANSIENT_4XX = frozenset({408, 425, 429})
ERROR_BODY_CHARS = 200

log = structlog.get_logger(__name__)


# ---- notices ---------------------------------------------------------------------


def mask_phone(phone: str) -> str:
    """The last 4 digits only: enough to tell two residents apart in a log."""
    return f"***{phone[-4:]}" if len(phone) > 4 else "***"


@dataclass(frozen=True, slots=True, repr=False)
class Notice:
    number: str
    phone: str
    kind: str
    text: str
    round: int = 0  # the ticket's reopen count when the notice was asked for

    @property
    def ref(self) -> str:
        """The gateway's reference: the same notice retried has the same one; the
        same kind after a reopen has another."""
        return f"{self.number}:{self.kind}" + (f":{self.round}" if self.round else "")

    def to_json(self) -> dict[str, str]:
        return {"number": self.number, "phone": self.phone, "kind": self.kind,
                "text": self.text, "ref": self.ref}

    def __repr__(self) -> str:
        return (f"Notice(number={self.number!r}, phone={mask_phone(self.phone)!r}, "
                f"kind={self.kind!r}, text={self.text!r})")


@dataclass(frozen=True, slots=True)
class Templates:
    by_kind: dict[str, dict[str, str]]  # kind -> category (or "default") -> template
    defaults: dict[str, str]  # placeholder values when a notice lacks them

    def text(self, kind: str, number: str, category: str = "",
             params: dict[str, str] | None = None) -> str:
        variants = self.by_kind[kind]
        template = variants.get(category, variants["default"])
        return template.format_map({**self.defaults, **(params or {}), "number": number})


def templates_from_dict(data: dict[str, Any]) -> Templates:
    """Build and validate the templates: every kind with a default, and no
    placeholder that a notice could lack."""
    defaults = {str(k): str(v) for k, v in (data.get("defaults") or {}).items()}
    by_kind = {str(kind): {str(c): str(t) for c, t in variants.items()}
               for kind, variants in data.items() if kind != "defaults"}
    known = {"number", *defaults}
    problems = [f"no template for {kind!r}" for kind in NOTICE_KINDS
                if "default" not in by_kind.get(kind, {})]
    problems += [f"unknown kind {kind!r}" for kind in by_kind if kind not in NOTICE_KINDS]
    for kind, variants in by_kind.items():
        for category, template in variants.items():
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
            problems += [f"{kind}.{category}: unknown placeholder {{{name}}}"
                         for name in sorted(names - known)]
    if problems:
        raise ValueError("invalid notice templates: " + "; ".join(problems))
    return Templates(by_kind, defaults)


@lru_cache(maxsize=4)
def load_templates(path: Path = NOTICES_FILE) -> Templates:
    with open(path, encoding="utf-8") as fh:
        return templates_from_dict(yaml.safe_load(fh))


def notice_for(
    kind: str, number: str, phone: str, *, category: str = "",
    params: dict[str, str] | None = None, templates: Templates | None = None, round: int = 0,
) -> Notice:
    text = (templates or load_templates()).text(kind, number, category, params)
    return Notice(number=number, phone=phone, kind=kind, text=text, round=round)


def notice_from(command: Notify, templates: Templates | None = None) -> Notice:
    """The notice a lifecycle ``Notify`` command asks for."""
    return notice_for(command.kind, command.number, command.phone, category=command.category,
                      params=command.params, templates=templates, round=command.round)


# ---- errors ----------------------------------------------------------------------


class NotifyError(Exception):
    """A notice that was not sent. ``status``: the HTTP status, 0 when none came."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class PermanentNotifyError(NotifyError):
    """Refused for good (a bad number, a refused token): do not retry."""


class TransientNotifyError(NotifyError):
    """Not sent this time (gateway down, timeout, rate limit): retry later."""

    def __init__(self, message: str, *, status: int = 0,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


# ---- notifiers -------------------------------------------------------------------


class Notifier(Protocol):
    async def send(self, notice: Notice) -> None:
        """Deliver ``notice``, or raise a ``NotifyError``."""

    async def close(self) -> None:
        """Release connections (a notifier is used for the life of the service)."""


class LogNotifier:
    """Writes each notice to the log: the default where no gateway is set up."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger or log

    async def send(self, notice: Notice) -> None:
        self._log.info("notice", number=notice.number, kind=notice.kind,
                 phone=mask_phone(notice.phone), text=notice.text)

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "LogNotifier()"


class _HttpNotifier:
    """A JSON POST to ``url``; the answer's status decides sent, permanent, transient."""

    kind = "http"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 10.0,
                 session: aiohttp.ClientSession | None = None, logger: Any = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"{self.kind} notifier: the URL must be http(s), not {safe_url(url)!r}")
        if not secret:
            raise ValueError(f"{self.kind} notifier: the token or secret is empty")
        self.url = url
        self.timeout_s = timeout_s
        self._secret = secret
        self._session = session
        self._own_session = session is None
        self._log = logger or log

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={safe_url(self.url)!r})"

    async def _post(self, notice: Notice, body: bytes, headers: dict[str, str]) -> None:
        try:
            # No redirects: a POST would come back as a GET, the token sent elsewhere.
            async with self.session.post(
                self.url, data=body, headers={"Content-Type": JSON_TYPE, **headers},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), allow_redirects=False,
            ) as resp:
                status, text = resp.status, await resp.text(errors="replace")
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TRANSPORT_ERRORS as exc:
            raise TransientNotifyError(
                f"{self.kind} notice {notice.ref} not sent to {safe_url(self.url)}: "
                f"{self._clean(describe_transport_error(exc))}") from exc
        self._check(notice, status, text, retry_after)
        self._log.info("notice sent", notifier=self.kind, number=notice.number, kind=notice.kind,
                 phone=mask_phone(notice.phone), status=status)

    def _check(self, notice: Notice, status: int, text: str, retry_after: float | None) -> None:
        if 200 <= status < 300:
            return
        message = (f"{self.kind} notice {notice.ref} refused by {safe_url(self.url)}: "
                   f"HTTP {status}: {self._clean(text[:ERROR_BODY_CHARS])}")
        if status >= 500 or status in TRANSIENT_4XX:
            raise TransientNotifyError(message, status=status, retry_after_s=retry_after)
        raise PermanentNotifyError(message, status=status)

    def _clean(self, text: str) -> str:
        # A gateway may echo what it got: never let the secret into a message.
        return escape_controls(redact(text, [self._secret]))


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the job queue's own back-off applies


class SmsGatewayNotifier(_HttpNotifier):
    """An SMS gateway: POST ``{"to", "text", "ref"}`` with ``Authorization: Bearer``."""

    kind = "sms"

    async def send(self, notice: Notice) -> None:
        body = _json({"to": notice.phone, "text": notice.text, "ref": notice.ref})
        await self._post(notice, body, {"Authorization": f"Bearer {self._secret}"})


class WebhookNotifier(_HttpNotifier):
    """Any HTTP receiver: POST the notice, signed with HMAC-SHA256 over the body."""

    kind = "webhook"

    async def send(self, notice: Notice) -> None:
        body = _json(notice.to_json())
        await self._post(notice, body, {SIGNATURE_HEADER: sign(body, self._secret)})


def _json(data: dict[str, str]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """The ``X-Signature`` value: ``sha256=`` and the hex HMAC of the exact body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, signature: str, secret: str) -> bool:
    """For the receiving side: compares in constant time."""
    return hmac.compare_digest(sign(body, secret), signature)


def build_notifier(kind: str = "log", url: str = "", secret: str = "", *,
                   timeout_s: float = 10.0) -> Notifier:
    """The notifier the settings name. ``secret``: the SMS gateway's bearer token, or
    the webhook's shared HMAC secret (unused for ``log``)."""
    if kind == "log":
        return LogNotifier()
    if kind == "sms":
        return SmsGatewayNotifier(url, secret, timeout_s=timeout_s)
    if kind == "webhook":
        return WebhookNotifier(url, secret, timeout_s=timeout_s)
    raise ValueError(f"unknown notifier {kind!r}: one of {', '.join(NOTIFIER_KINDS)}")
