"""Which database errors mean "away or restarting, try again" and which are real."""

from __future__ import annotations

import asyncpg
import pytest

from callcenter.db.store import TRANSIENT_ERRORS, is_transient

exc = asyncpg.exceptions

AWAY = [
    exc.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    exc.ConnectionFailureError("connection failure"),
    exc.ClientCannotConnectError("could not connect"),
    exc.ConnectionRejectionError("rejected"),
    exc.TransactionResolutionUnknownError("unknown"),
    exc.PostgresConnectionError("class 08"),
    exc.CannotConnectNowError("the database system is starting up"),
    exc.AdminShutdownError("terminating connection due to administrator command"),
    exc.CrashShutdownError("crash"),
    exc.TooManyConnectionsError("sorry, too many clients already"),
    exc.SerializationError("could not serialize access"),
    exc.DeadlockDetectedError("deadlock detected"),
    asyncpg.InterfaceError("cannot call Connection.execute(): connection is closed"),
    exc.InternalClientError("unexpected"),
    ConnectionResetError("reset by peer"),
    ConnectionRefusedError("refused"),
    FileNotFoundError("/tmp/pg/.s.PGSQL.5432"),
    BrokenPipeError("broken pipe"),
    TimeoutError(),
    OSError("network unreachable"),
]

REAL = [
    exc.UniqueViolationError("duplicate key"),
    exc.ForeignKeyViolationError("no such call"),
    exc.CheckViolationError("check"),
    exc.PostgresSyntaxError("syntax error at or near"),
    exc.UndefinedColumnError("column does not exist"),
    exc.UndefinedTableError("relation does not exist"),
    exc.DataError("invalid input for query argument $1"),
    exc.ClientConfigurationError("bad dsn"),
    exc.ProtocolViolationError("protocol"),
    exc.QueryCanceledError("canceling statement due to statement timeout"),
    exc.DatabaseDroppedError("database dropped"),
    exc.DiskFullError("no space left"),
    ValueError("update_call: unknown fields"),
    TypeError("bad argument"),
    RuntimeError("bug"),
]


@pytest.mark.parametrize("error", AWAY, ids=lambda e: type(e).__name__)
def test_errors_of_a_database_that_is_away_are_transient(error: BaseException) -> None:
    assert is_transient(error)
    assert isinstance(error, TRANSIENT_ERRORS)


@pytest.mark.parametrize("error", REAL, ids=lambda e: type(e).__name__)
def test_real_errors_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_every_connection_class_error_is_transient() -> None:
    """New subclasses asyncpg adds to class 08 or 57 are covered without a list."""
    for base in (asyncpg.PostgresConnectionError, exc.OperatorInterventionError):
        for cls in base.__subclasses__():
            if cls in (exc.ProtocolViolationError, exc.QueryCanceledError,
                       exc.DatabaseDroppedError):
                continue
            assert is_transient(cls("x")), cls
