"""Structured logging: stdlib loggers everywhere, rendered by structlog.

Logs go to stderr so that commands printing JSON on stdout stay parseable.
"""

from __future__ import annotations

import logging
import sys
import warnings

import structlog


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processor=renderer,
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
