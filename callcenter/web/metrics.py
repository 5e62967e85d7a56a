"""Prometheus metrics at /metrics, collected at scrape time.

Live queue figures come from the call distributor's snapshot (its own state),
call counts from the database, so nothing has to be kept in step by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class _Snapshot(Collector):
    def __init__(self, routing: dict[str, Any], calls: list[tuple[str, str, int]] | None,
                 pending_writes: int) -> None:
        self.routing = routing
        self.calls = calls
        self.pending_writes = pending_writes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily("callcenter_queue_waiting_calls",
                                    "Calls waiting for an agent", labels=["queue"])
        longest = GaugeMetricFamily("callcenter_queue_longest_wait_seconds",
                                    "Longest current wait", labels=["queue"])
        available = GaugeMetricFamily("callcenter_queue_agents_available",
                                      "Agents free for the queue", labels=["queue"])
        agents = GaugeMetricFamily("callcenter_queue_agents",
                                   "Agents who may serve the queue, by state",
                                   labels=["queue", "state"])
        for name, stats in (self.routing.get("queues") or {}).items():
            waiting.add_metric([name], stats.get("waiting", 0))
            longest.add_metric([name], stats.get("longest_wait_s", 0) or 0)
            available.add_metric([name], stats.get("agents_available", 0))
            for state, count in (stats.get("agents") or {}).items():
                agents.add_metric([name, state], count)
        live = GaugeMetricFamily("callcenter_live_calls", "Calls in the distributor, by state",
                                 labels=["state"])
        for state, count in (self.routing.get("calls") or {}).items():
            live.add_metric([state], count)
        calls = GaugeMetricFamily("callcenter_calls", "Calls by stage and status",
                                  labels=["stage", "status"])
        for stage, status, count in self.calls or []:
            calls.add_metric([stage, status], count)
        database = GaugeMetricFamily("callcenter_database_up",
                                     "Whether the database answered this scrape")
        database.add_metric([], 0 if self.calls is None else 1)
        pending = GaugeMetricFamily("callcenter_pending_writes",
                                    "Store writes of the IVR and the ACD not yet in the database")
        pending.add_metric([], self.pending_writes)
        yield from (waiting, longest, available, agents, live, calls, database, pending)


class _IvrNodes(Collector):
    def __init__(self, node_events: list[dict[str, Any]]) -> None:
        self.node_events = node_events

    def collect(self) -> Iterator[CounterMetricFamily]:
        events = CounterMetricFamily(
            "callcenter_ivr_node_events", "IVR events per node since this process started: "
            "entry, choice (via key or speech), timeout, invalid, transfer, hangup",
            labels=["node", "kind", "via"])
        for e in self.node_events:
            events.add_metric([e["node"], e["kind"], e["via"]], e["count"])
        yield events


def render(routing: dict[str, Any], calls: list[tuple[str, str, int]] | None,
           pending_writes: int = 0, ivr: dict[str, Any] | None = None) -> bytes:
    """``calls`` None: the database did not answer (live figures are served anyway).
    ``ivr``: the IVR's per-node counts (``NodeCounts.snapshot``)."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(routing, calls, pending_writes))
    registry.register(_IvrNodes((ivr or {}).get("node_events", [])))
    return generate_latest(registry)
