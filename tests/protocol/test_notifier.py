"""Progress notices against a real HTTP server on loopback: what the SMS gateway and
the webhook receive (body, headers, signature), and the error classes a job queue
retries on (400 permanent; 503, 429, timeout, refused transient)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from callcenter.tickets import notify
from callcenter.tickets.lifecycle import Notify
from callcenter.tickets.notify import (
    LogNotifier,
    Notice,
    PermanentNotifyError,
    SmsGatewayNotifier,
    TransientNotifyError,
    WebhookNotifier,
    build_notifier,
    notice_for,
    notice_from,
)

TOKEN = "tok-3f9a1c77e2"
SECRET = "whsec-5b2e8d41aa"
NUMBER = "T20261130-000012"
PHONE = "13800001234"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Gateway:
    """A loopback HTTP server that records each request and answers as told."""

    status: int = 200
    reply: str = '{"ok": true}'
    reply_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.method, request.path, dict(request.headers),
                                      await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=self.status, text=self.reply, headers=self.reply_headers)


class FakeLog:
    """Stands in for the structlog logger: keeps every call."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    def text(self) -> str:
        return repr(self.lines)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    server = Gateway()
    await server.start()
    yield server
    await server.close()


def receipt() -> Notice:
    return notice_for("receipt", NUMBER, PHONE, category="engineering")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- notices --------------------------------------------------------------------


def test_notice_texts_from_the_templates() -> None:
    assert receipt().text == f"您的报修已受理, 工单号 {NUMBER}, 我们将尽快安排处理。"
    assert "投诉" in notice_for("receipt", NUMBER, PHONE, category="complaint").text
    dispatched = notice_from(Notify(NUMBER, "dispatched", PHONE, "engineering",
                                    {"department": "工程部"}))
    assert dispatched.text == f"您的工单 {NUMBER} 已派至工程部处理, 请保持电话畅通。"
    assert (dispatched.number, dispatched.phone, dispatched.kind) == (NUMBER, PHONE,
                                                                       "dispatched")
    # A placeholder the command lacks takes its default.
    assert "相关部门" in notice_for("dispatched", NUMBER, PHONE).text
    for kind in ("resolved", "callback"):
        assert NUMBER in notice_for(kind, NUMBER, PHONE).text


def test_templates_are_validated() -> None:
    with pytest.raises(ValueError, match=r"no template for 'callback'.*unknown placeholder"):
        notify.templates_from_dict({
            "receipt": {"default": "{number} {who}"}, "dispatched": {"default": "x"},
            "resolved": {"default": "x"}})


def test_a_notice_shows_the_phone_masked() -> None:
    assert "13800001234" not in repr(receipt()) and "***1234" in repr(receipt())
    assert notify.mask_phone("1234") == "***"
    assert receipt().ref == f"{NUMBER}:receipt"
    again = notify.Notice(NUMBER, "13800001234", "resolved", "x", round=1)
    assert again.ref == f"{NUMBER}:resolved:1"  # after a reopen: another message


async def test_the_log_notifier_masks_the_phone() -> None:
    log = FakeLog()
    await LogNotifier(log).send(receipt())
    (event, fields), = log.lines
    assert event == "notice"
    assert fields == {"number": NUMBER, "kind": "receipt", "phone": "***1234",
                      "text": receipt().text}


# ---- the SMS gateway ------------------------------------------------------------


async def test_sms_posts_to_text_ref_with_a_bearer_token(gateway: Gateway) -> None:
    log = FakeLog()
    sms = SmsGatewayNotifier(gateway.url + "/v1/sms", TOKEN, logger=log)
    try:
        await sms.send(receipt())
    finally:
        await sms.close()
    (request,) = gateway.requests
    assert (request.method, request.path) == ("POST", "/v1/sms")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.json() == {"to": PHONE, "text": receipt().text, "ref": f"{NUMBER}:receipt"}
    assert "工单号".encode() in request.body  # UTF-8, not \\u escapes
    assert log.lines == [("notice sent", {"notifier": "sms", "number": NUMBER,
                                          "kind": "receipt", "phone": "***1234",
                                          "status": 200})]


async def test_any_2xx_is_sent(gateway: Gateway) -> None:
    gateway.status, gateway.reply = 202, ""
    sms = SmsGatewayNotifier(gateway.url, TOKEN, logger=FakeLog())
    try:
        await sms.send(receipt())
    finally:
        await sms.close()


async def test_a_400_is_permanent_and_never_quotes_the_token(gateway: Gateway) -> None:
    gateway.status = 400
    gateway.reply = f'{{"error": "bad number", "echo": "Bearer {TOKEN}"}}'
    sms = SmsGatewayNotifier(gateway.url, TOKEN, logger=FakeLog())
    try:
        with pytest.raises(PermanentNotifyError) as err:
            await sms.send(receipt())
    finally:
        await sms.close()
    assert err.value.status == 400
    assert "bad number" in str(err.value) and TOKEN not in str(err.value)
    assert PHONE not in str(err.value)
    assert not isinstance(err.value, TransientNotifyError)


@pytest.mark.parametrize(("status", "retry_after"), [(503, "30"), (500, None), (429, "5"),
                                                     (408, None)])
async def test_5xx_and_rate_limits_are_transient(gateway: Gateway, status: int,
                                                 retry_after: str | None) -> None:
    gateway.status = status
    gateway.reply_headers = {"Retry-After": retry_after} if retry_after else {}
    sms = SmsGatewayNotifier(gateway.url, TOKEN, logger=FakeLog())
    try:
        with pytest.raises(TransientNotifyError) as err:
            await sms.send(receipt())
    finally:
        await sms.close()
    assert err.value.status == status
    assert err.value.retry_after_s == (float(retry_after) if retry_after else None)
    assert isinstance(err.value, notify.NotifyError)


async def test_a_timeout_is_transient(gateway: Gateway) -> None:
    gateway.delay_s = 0.5
    sms = SmsGatewayNotifier(gateway.url, TOKEN, timeout_s=0.1, logger=FakeLog())
    try:
        with pytest.raises(TransientNotifyError) as err:
            await sms.send(receipt())
    finally:
        await sms.close()
    assert err.value.status == 0 and TOKEN not in str(err.value)


async def test_no_connection_is_transient() -> None:
    sms = SmsGatewayNotifier(f"http://127.0.0.1:{free_port()}/sms", TOKEN, logger=FakeLog())
    try:
        with pytest.raises(TransientNotifyError) as err:
            await sms.send(receipt())
    finally:
        await sms.close()
    assert err.value.status == 0


async def test_a_redirect_is_not_followed(gateway: Gateway) -> None:
    # Following it would re-send the token wherever the Location points.
    gateway.status, gateway.reply_headers = 302, {"Location": "http://example.invalid/"}
    sms = SmsGatewayNotifier(gateway.url, TOKEN, logger=FakeLog())
    try:
        with pytest.raises(PermanentNotifyError):
            await sms.send(receipt())
    finally:
        await sms.close()
    assert len(gateway.requests) == 1


# ---- the webhook ----------------------------------------------------------------


async def test_the_webhook_signs_the_exact_body(gateway: Gateway) -> None:
    hook = WebhookNotifier(gateway.url + "/hooks/notice", SECRET, logger=FakeLog())
    try:
        await hook.send(receipt())
    finally:
        await hook.close()
    (request,) = gateway.requests
    assert request.path == "/hooks/notice"
    assert request.json() == {"number": NUMBER, "phone": PHONE, "kind": "receipt",
                              "text": receipt().text, "ref": f"{NUMBER}:receipt"}
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Signature"] == f"sha256={expected}"
    assert notify.signature_valid(request.body, request.headers["X-Signature"], SECRET)
    assert not notify.signature_valid(request.body + b" ", request.headers["X-Signature"],
                                      SECRET)
    assert "Authorization" not in request.headers
    assert SECRET.encode() not in request.body


async def test_webhook_errors_have_the_same_classes(gateway: Gateway) -> None:
    hook = WebhookNotifier(gateway.url, SECRET, logger=FakeLog())
    try:
        gateway.status, gateway.reply = 401, f"bad signature for secret {SECRET}"
        with pytest.raises(PermanentNotifyError) as permanent:
            await hook.send(receipt())
        assert SECRET not in str(permanent.value)
        gateway.status = 503
        with pytest.raises(TransientNotifyError):
            await hook.send(receipt())
    finally:
        await hook.close()


# ---- the factory and secrets ----------------------------------------------------


async def test_build_notifier_and_secrets_out_of_reprs(gateway: Gateway) -> None:
    assert isinstance(build_notifier(), LogNotifier)
    sms = build_notifier("sms", "https://user:pw@sms.example/send?key=k", TOKEN)
    hook = build_notifier("webhook", gateway.url, SECRET)
    assert isinstance(sms, SmsGatewayNotifier) and isinstance(hook, WebhookNotifier)
    assert repr(sms) == "SmsGatewayNotifier(url='https://sms.example/send')"
    assert SECRET not in repr(hook) and TOKEN not in repr(sms)
    await hook.send(receipt())  # the factory's notifier really sends
    await hook.close()
    await sms.close()  # never used: nothing to close


@pytest.mark.parametrize(("args", "problem"), [
    (("fax", "http://x", "s"), "unknown notifier 'fax'"),
    (("sms", "", TOKEN), "must be http"),
    (("sms", "ftp://x", TOKEN), "must be http"),
    (("webhook", "http://x", ""), "empty"),
])
def test_build_notifier_refuses_bad_settings(args: tuple[str, str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        build_notifier(*args)
    assert TOKEN not in str(err.value)
