"""The ARI client against a fake Asterisk: typed errors, transport failures."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from callcenter.ari.client import (
    AriClient,
    AriError,
    AriNotFound,
    AriUnavailable,
    describe_transport_error,
)
from tests.protocol.fake_ari import APP, PASSWORD, USER, FakeAri


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri()
    await server.start()
    yield server
    await server.close()


async def test_client_errors_are_typed(fake: FakeAri):
    client = AriClient(fake.url + "/ari", USER, PASSWORD, APP)
    try:
        with pytest.raises(AriNotFound) as not_found:
            await client.get("/channels/nope")
        assert not_found.value.status == 404
        assert not_found.value.method == "GET"
        assert not_found.value.path == "/channels/nope"
        fake.fail_rules.append(("POST", r"^/bridges$", 500))
        with pytest.raises(AriError) as err:
            await client.create_bridge()
        assert err.value.status == 500 and not isinstance(err.value, AriNotFound)
        assert await client.hangup("nope") is False
        assert await client.stop_playback("x/y") is False
        assert fake.requests[-1].path == "/playbacks/x/y"
        assert fake.requests[-1].raw == "/playbacks/x%2Fy"
        assert await client.get_var("nope", "CC_CALL_ID") is None
        assert await client.list_channels() == []
    finally:
        await client.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_transport_errors_are_ari_unavailable(fake: FakeAri):
    refused = AriClient(f"http://127.0.0.1:{free_port()}", USER, PASSWORD, APP)
    slow = AriClient(fake.url, USER, PASSWORD, APP, request_timeout_s=0.1)
    dropped = AriClient(fake.url, USER, PASSWORD, APP)
    try:
        with pytest.raises(AriUnavailable) as err:
            await refused.list_channels()
        assert err.value.status == 0 and isinstance(err.value, AriError)
        with pytest.raises(AriUnavailable):
            await refused.hangup("gone")  # not swallowed like a 404
        fake.delay_s = 0.5
        with pytest.raises(AriUnavailable):
            await slow.get("/channels")
        fake.delay_s = 0.0
        fake.fail_rules.append(("DELETE", r"^/channels/x$", 0))
        with pytest.raises(AriUnavailable):
            await dropped.hangup("x")
    finally:
        for client in (refused, slow, dropped):
            await client.close()


async def until(cond: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_events_websocket_sends_credentials_only_in_the_header(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 on the upgrade: the request carried Basic auth and no api_key, and
    neither the password nor a query string reaches the log."""
    password = "Pw-zq81-not-in-logs"
    fake.ws_refuse = True
    caplog.set_level(logging.DEBUG)
    client = AriClient(fake.url, USER, password, APP, reconnect_min_s=0.01,
                       reconnect_max_s=0.05)

    async def consume() -> None:
        async for _ in client.events():
            pass

    task = asyncio.create_task(consume())
    try:  # refused, logged, and tried again
        await until(lambda: len(fake.ws_auth) >= 2
                    and any("refused" in r.getMessage() for r in caplog.records),
                    what="two refused upgrades, logged")
        assert not client.connected
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)
    for query in fake.ws_auth:
        assert query == {"app": APP, "subscribeAll": "false"}  # no api_key
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    assert set(fake.ws_authorization) == {f"Basic {token}"}
    everything = caplog.text  # the fake's access log included
    assert password not in everything and token not in everything
    assert "api_key" not in everything
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("callcenter"))
    assert "401" in ours and "/ari/events" in ours
    assert "?" not in ours and "subscribeAll" not in ours  # no query string at all


def test_transport_errors_are_described_without_credentials_or_query() -> None:
    text = describe_transport_error(
        aiohttp.InvalidURL("http://cc:s3cret@127.0.0.1:8088/ari/x?api_key=cc:s3cret"))
    assert "s3cret" not in text and "api_key" not in text
    assert "http://127.0.0.1:8088/ari/x" in text
    assert describe_transport_error(TimeoutError()) == "TimeoutError"
    client = AriClient("http://cc:s3cret@127.0.0.1:8088/ari", USER, PASSWORD, APP)
    assert client.base_url == "http://127.0.0.1:8088" and "s3cret" not in client.events_url
