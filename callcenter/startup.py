"""What the long-running commands (``serve``, ``worker``, ``demo``) do before they
start, and how any command reports a failure it expects: one line on stderr,
exit status 2 (README: "CLI errors are one line and exit status 2").

``failure_message`` is the one place that turns an exception into that line: a
port in use, a database that cannot be reached or a DSN that cannot be used, a
broken queues file, a folder that cannot be written, invalid settings. It
never shows a password (the DSN is masked, known secrets are replaced), and
returns None for anything else, which is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from callcenter.errors import CliError
from callcenter.permissions import prepare_recordings_dir, restrict_umask
from callcenter.redact import dsn_passwords, mask_dsn, redact

if TYPE_CHECKING:
    from callcenter.settings import Settings

PORT_HINT = "is another callcenter already running? see CALLCENTER_WEB_PORT / CALLCENTER_AGI_PORT"


def prepare_process(settings: Settings) -> None:
    """Files this process creates are not readable by other users (umask 027), and
    the recordings folder exists with mode 0750."""
    restrict_umask()
    folder = settings.recordings
    try:
        prepare_recordings_dir(folder)
    except OSError as exc:
        raise CliError(f"cannot create the recordings folder {folder}: "
                       f"{exc.strerror or exc}") from exc


def check_ports_free(*addresses: tuple[str, int]) -> None:
    """Fail at once, before anything starts, when a listen address is taken (binding
    as asyncio's servers do, with SO_REUSEADDR); the real bind comes later."""
    for host, port in addresses:
        try:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        for family, kind, proto, _name, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    raise CliError(f"cannot listen on {host}:{port}: "
                                   f"{exc.strerror or exc} ({PORT_HINT})") from exc


def _database_failure(exc: BaseException, settings: Settings | None) -> str:
    """The database's own message (a driver may quote the DSN: its password is
    replaced) and which database, its DSN masked."""
    text = str(exc)
    if settings is None:
        return text
    if settings.database_url:
        text = redact(text, dsn_passwords(settings.database_url))
        return f"{text} (DATABASE_URL {mask_dsn(settings.database_url)})"
    return f"{text} (embedded PostgreSQL in {settings.data_dir / 'pg'})"


def _os_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{exc.strerror or exc} ({PORT_HINT})"
    if exc.strerror and exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
        return f"{exc.strerror}: {target}"
    return str(exc.strerror or exc)


def _describe(exc: BaseException, settings: Settings | None) -> str | None:
    from pydantic import ValidationError

    from callcenter.acd.queues import QueueConfigError

    if isinstance(exc, CliError | QueueConfigError):
        return str(exc)
    if isinstance(exc, ValidationError):  # without the input values: they may be secrets
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                             for e in exc.errors())
        return f"invalid settings: {problems}"
    if isinstance(exc, OSError):
        return _os_error(exc)
    from callcenter.db.connect import DatabaseConfigError, DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable | DatabaseConfigError):
        return _database_failure(exc, settings)
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return "database error: " + _database_failure(exc, settings)
    return None


def failure_message(exc: BaseException, settings: Settings | None) -> str | None:
    """The line (without the ``callcenter: `` prefix) for an expected failure; None
    for an unexpected one."""
    text = _describe(exc, settings)
    return None if text is None else " ".join(text.split())  # one line, always
