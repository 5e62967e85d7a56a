"""The ARI client against a fake Asterisk: typed errors, transport failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callcenter.ari.client import AriClient, AriError, AriNotFound, AriUnavailable
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
