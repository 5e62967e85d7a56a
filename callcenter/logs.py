"""Structured logging: stdlib loggers everywhere, rendered by structlog.

Logs go to stderr so that commands printing JSON on stdout stay parseable.

One record is one line: control characters in the message and in every string
value (a request path with CR/LF, an escape sequence) are written escaped
(``\\r``, ``\\n``, ``\\x1b``), so nobody can forge a log line. Tracebacks are
plain text without local variables (locals hold settings and request data).
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import structlog

# C0 controls, DEL, C1 controls and Unicode's line and paragraph separators.
_CONTROL = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {
    code: _NAMED.get(chr(code)) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _CONTROL
}
# Multi-line by design, rendered by the exception formatter (code, not input).
_MULTILINE_KEYS = frozenset({"exc_info", "exception", "stack", "stack_info"})


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape."""
    return text.translate(_ESCAPES)


def escape_control_chars(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """structlog processor: the event and every string value without raw control
    characters. Idempotent (a backslash is left as it is)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and key not in _MULTILINE_KEYS:
            event_dict[key] = value.translate(_ESCAPES)
    return event_dict


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    renderer: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info,
         structlog.processors.JSONRenderer(ensure_ascii=False)]
        if json_lines
        else [structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback)]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Every record passes here last: those of stdlib loggers (all of ours, after
        # foreign_pre_chain, with their %-arguments merged into the event) and
        # structlog's own alike, in both renderings.
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            escape_control_chars,
            *renderer,
        ],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso"),
        ],
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty third-party loggers stay at WARNING unless we debug.
    for name in ("aiohttp.access", "pgqueuer", "asyncio", "pgserver"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # pgserver's platformdirs complains about XDG_RUNTIME_DIR on servers; harmless.
    warnings.filterwarnings("ignore", module="platformdirs")
