"""Fixtures for end-to-end tests through the real, sandboxed Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callcenter.ari.client import AriClient, AriNotFound
from callcenter.sandbox.asterisk import AsteriskSandbox
from callcenter.settings import Settings
from callcenter.web.app import create_app


@pytest.fixture(scope="session")
def asterisk_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskSandbox]:
    """A running sandboxed Asterisk (built on first use), stopped at the end.

    Recordings land in a fresh temporary folder (``sandbox.recordings_dir``).
    An Asterisk already running from the same root is reused, re-bound to that
    folder, and left running.
    """
    if os.geteuid() != 0:
        pytest.skip("the Asterisk sandbox needs root (debootstrap, chroot and mount)")
    sandbox = AsteriskSandbox(recordings_dir=tmp_path_factory.mktemp("recordings"))
    sandbox.build()
    was_running = sandbox.is_running()
    sandbox.start()
    try:
        yield sandbox
    finally:
        if not was_running:
            sandbox.stop()


@pytest.fixture(autouse=True)
def no_calls_left_over(asterisk_sandbox: AsteriskSandbox) -> Iterator[None]:
    """Every end-to-end test starts with an Asterisk without channels: a call another
    test left behind would be adopted by this test's service (reconcile) and take
    one of its agents."""
    _hang_up_everything(asterisk_sandbox)
    yield


def _no_channels(sandbox: AsteriskSandbox) -> bool:
    counts = sandbox.cli("core show channels count").splitlines()
    return any(re.fullmatch(r"0 active channels?", line.strip()) for line in counts)


def _hang_up_everything(sandbox: AsteriskSandbox, within_s: float = 15.0) -> None:
    if _no_channels(sandbox):
        return
    sandbox.cli("channel request hangup all")
    deadline = time.monotonic() + within_s
    while not _no_channels(sandbox):
        if time.monotonic() > deadline:
            raise AssertionError("channels left over from an earlier test do not go away")
        time.sleep(0.1)


async def eventually(
    check: Callable[[], Awaitable[Any]], within_s: float, what: str, *, every_s: float = 0.1,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within_s``,
    saying how loaded the machine was and what ``explain`` finds (where it got to)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every_s)
    state = f"; {await explain()}" if explain else ""
    raise AssertionError(f"timed out after {within_s}s waiting for {what} "
                         f"(load average {os.getloadavg()}){state}")


@pytest.fixture
def sandbox_settings(asterisk_sandbox: AsteriskSandbox, db_dsn: str, tmp_path: Path,
                     shared_dir: Path) -> Callable[..., Settings]:
    """Settings for a service beside the sandboxed Asterisk, on this test's database
    and folders and a free web port (no wrap-up unless overridden)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"wrap_up_s": 0, **overrides}
        return Settings(database_url=db_dsn, data_dir=tmp_path,
                        recordings_dir=asterisk_sandbox.recordings_dir, shared_dir=shared_dir,
                        web_port=free_port(), **values)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running_service(settings: Settings, *, workers: int = 1
                          ) -> AsyncIterator[web.Application]:
    """The whole service as ``callcenter serve`` runs it (web, FastAGI, the ACD, SIP
    provisioning, ``workers`` transcription workers)."""
    app = create_app(settings, telephony=True, workers=workers)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.web_port).start()
    try:
        yield app
    finally:
        await runner.cleanup()


async def endpoint_state(ari: AriClient, user: str) -> str | None:
    """A PJSIP endpoint's state as ARI sees it (online/offline), None if unknown."""
    try:
        return str((await ari.get(f"/endpoints/PJSIP/{user}"))["state"])
    except AriNotFound:
        return None


async def provisioned(ari: AriClient, user: str) -> bool:
    """Whether the service pushed this SIP account into Asterisk."""
    try:
        await ari.get(f"/asterisk/config/dynamic/res_pjsip/endpoint/{user}")
    except AriNotFound:
        return False
    return True
