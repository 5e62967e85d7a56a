"""Logging as the service configures it (callcenter/logs.py): one record is one
line whatever its text holds, and tracebacks carry no local variables (settings
with passwords, request data)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from callcenter import logs
from callcenter.settings import Settings

ARI_PASSWORD = "Ari-pw-9Qz-locals"
DB_PASSWORD = "Db-pw-9Qz-locals"


@pytest.fixture
def service_logging() -> Iterator[None]:
    """logs.configure() replaces the root logger's handlers: give pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _start_with_settings() -> None:
    settings = Settings(ari_password=ARI_PASSWORD,
                        database_url=f"postgresql://cc:{DB_PASSWORD}@db.example/calls")
    token = f"{settings.ari_user}:{settings.ari_password}"
    raise RuntimeError(f"start-up failed ({len(token)} characters of credentials)")


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_logged_traceback_shows_no_locals(
    service_logging: None, capsys: pytest.CaptureFixture[str], json_lines: bool
) -> None:
    logs.configure("INFO", json_lines=json_lines)
    try:
        _start_with_settings()
    except RuntimeError:
        logging.getLogger("callcenter.test").exception("service failed")
    err = capsys.readouterr().err
    assert "service failed" in err and "RuntimeError: start-up failed" in err.replace(
        "\\n", "\n")
    assert "_start_with_settings" in err  # a traceback, only without the locals
    assert ARI_PASSWORD not in err and DB_PASSWORD not in err
    assert "settings =" not in err and "token =" not in err


def test_a_request_path_cannot_forge_a_line(
    service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("INFO")
    path = "/calls/x\r\nFAKE 2025-01-01T00:00:00Z [error    ] forged\x1b[2K\u2028tail"
    logging.getLogger("callcenter.web").info("unhandled error on GET %s", path)
    structlog.get_logger("callcenter.web").warning("request", path=path)
    err = capsys.readouterr().err
    lines = err.splitlines(keepends=True)
    assert len(lines) == 2 and all(line.endswith("\n") for line in lines), err
    escaped = "/calls/x\\r\\nFAKE 2025-01-01T00:00:00Z [error    ] forged\\x1b[2K\\u2028tail"
    assert escaped in lines[0]
    # A value is escaped too (and then quoted by the console renderer, as any value
    # with blanks: its backslashes doubled).
    assert "path='/calls/x\\\\r\\\\nFAKE" in lines[1] and "forged" in lines[1]
    assert "\r" not in err and "\x1b" not in err and "\u2028" not in err


def test_json_lines_stay_one_line_too(
    service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("INFO", json_lines=True)
    logging.getLogger("callcenter.web").info("GET %s", "/a\r\nFAKE line")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert json.loads(err)["event"] == "GET /a\\r\\nFAKE line"


def test_escaping_is_idempotent_and_leaves_text_alone() -> None:
    text = "引号 \"x\" C:\\path\\n é"
    assert logs.escape_controls(text) == text
    once = logs.escape_controls("a\r\nb\tc\x00d\x7f")
    assert once == "a\\r\\nb\\tc\\x00d\\x7f" and logs.escape_controls(once) == once
