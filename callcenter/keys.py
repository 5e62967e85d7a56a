"""The typed keys of the one aiohttp application that holds the service together.

Kept apart from ``web/app.py`` (which builds the application) so the adapters'
cleanup contexts (``service.py``) can read the shared objects without importing
the web layer.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from callcenter.acd.queues import QueueConfig
from callcenter.db.store import PgStore
from callcenter.db.writer import OrderedWriter
from callcenter.settings import Settings
from callcenter.tickets.service import TicketService

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", PgStore)
DSN = web.AppKey("dsn", str)
WRITER = web.AppKey("writer", OrderedWriter)  # the telephony side's write-behind
LIVE = web.AppKey("live", dict)  # name -> object with snapshot() (the ACD) etc.
QUEUE_CONFIG = web.AppKey("queue_config", dict[str, QueueConfig])  # queues.yaml, as loaded
TICKETS = web.AppKey("tickets", TicketService)  # the ticket lifecycle's executor
