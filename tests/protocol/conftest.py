"""Fixtures of the protocol tests: a fake Asterisk (ARI) over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.protocol.fake_ari import FakeAri


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri()
    await server.start()
    yield server
    await server.close()
