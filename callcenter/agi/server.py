"""FastAGI server: one asyncio task per Asterisk connection, routed by script path.

Error policy, applied once around every request:
- the caller hangs up (:class:`AgiHangup`): not an error, logged at info; the
  handler itself records how far the call got;
- anything else a handler raises: logged with its traceback, then the caller
  is sent to the safe dialplan context (``hotline-fallback``, extension ``s``,
  priority 1) so nobody is left in silence;
- an unknown script: logged, caller sent to the safe context;
- garbage, an unfinished or oversized environment, or nothing at all within the
  header timeout: logged and the connection dropped.
The server keeps serving whatever one connection does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import structlog

from callcenter.agi.channel import (
    COMMAND_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    MEDIA_TIMEOUT_S,
    AgiChannel,
    AgiError,
    AgiHangup,
)
from callcenter.constants import CONTEXT_SAFE_FALLBACK

log = structlog.get_logger(__name__)

AgiHandler = Callable[[AgiChannel], Awaitable[None]]

# Bytes one line may hold before the connection counts as garbage.
STREAM_LIMIT = 64 * 1024
# Connections the kernel queues before we accept them. asyncio's default (100)
# overflows when many calls start at once: a dropped SYN is retried only after a
# second, so the caller hears a second of silence (the kernel caps this at
# net.core.somaxconn).
LISTEN_BACKLOG = 1024
FALLBACK_TIMEOUT_S = 3.0


async def send_to_safe_context(
    channel: AgiChannel, *, timeout_s: float = FALLBACK_TIMEOUT_S
) -> bool:
    """Point the channel at ``hotline-fallback,s,1``; True when Asterisk accepted it."""
    try:
        async with asyncio.timeout(timeout_s):
            await channel.set_context(CONTEXT_SAFE_FALLBACK)
            await channel.set_extension("s")
            await channel.set_priority(1)
        return True
    except AgiHangup:
        log.info("agi.fallback_skipped_hangup", script=channel.script)
    except (AgiError, TimeoutError, ValueError) as exc:
        log.error("agi.fallback_failed", script=channel.script, error=repr(exc))
    return False


class FastAgiServer:
    """Serve FastAGI requests on ``host:port``; ``router`` maps script names to handlers.

    ``port=0`` binds an ephemeral port; read it from :attr:`port` after
    :meth:`start`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        router: Mapping[str, AgiHandler],
        *,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        media_timeout_s: float = MEDIA_TIMEOUT_S,
    ) -> None:
        self.host = host
        self._port = port
        self.router = dict(router)
        self.header_timeout_s = header_timeout_s
        self.command_timeout_s = command_timeout_s
        self.media_timeout_s = media_timeout_s
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted since start, for metrics and tests

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def active_requests(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until no request is running (or ``timeout_s``); True when idle."""
        while self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            if pending:
                return False
        return True

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._port, limit=STREAM_LIMIT, backlog=LISTEN_BACKLOG
        )
        log.info("agi.listening", host=self.host, port=self.port)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, wait up to ``timeout_s`` for running requests, cancel the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout_s)
            for task in still:
                task.cancel()
            if still:
                log.warning("agi.stop_cancelled_requests", count=len(still))
                await asyncio.wait(still, timeout=1.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()
        log.info("agi.stopped")

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        channel = AgiChannel(
            reader,
            writer,
            header_timeout_s=self.header_timeout_s,
            command_timeout_s=self.command_timeout_s,
            media_timeout_s=self.media_timeout_s,
        )
        try:
            try:
                await channel.read_environment()
            except AgiError as exc:
                log.warning("agi.bad_request_dropped", peer=str(peer), error=str(exc))
                return
            await self._dispatch(channel, peer)
        except asyncio.CancelledError:
            log.warning("agi.request_cancelled", peer=str(peer), script=channel.script)
            raise
        except Exception:  # never let one connection take the server down
            log.exception("agi.request_crashed", peer=str(peer))
        finally:
            await channel.close()

    async def _dispatch(self, channel: AgiChannel, peer: object) -> None:
        bound = log.bind(
            peer=str(peer),
            script=channel.script,
            uniqueid=channel.unique_id,
            channel=channel.channel_name,
        )
        handler = self.router.get(channel.script)
        if handler is None:
            bound.warning("agi.unknown_script", known=sorted(self.router))
            await send_to_safe_context(channel)
            return
        try:
            await handler(channel)
        except AgiHangup as exc:
            bound.info("agi.caller_hung_up", reason=exc.reason)
        except asyncio.CancelledError:
            bound.warning("agi.handler_cancelled_fallback")
            await send_to_safe_context(channel)
            raise
        except Exception:
            bound.exception("agi.handler_failed_fallback")
            await send_to_safe_context(channel)
