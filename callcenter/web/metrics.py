"""Prometheus metrics at /metrics, collected at scrape time.

Live queue figures come from the call distributor's snapshot (its own state),
call counts from the database, so nothing has to be kept in step by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _Snapshot(Collector):
    def __init__(self, routing: dict[str, Any], calls: list[tuple[str, str, int]]) -> None:
        self.routing = routing
        self.calls = calls

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
        for stage, status, count in self.calls:
            calls.add_metric([stage, status], count)
        yield from (waiting, longest, available, agents, live, calls)


def render(routing: dict[str, Any], calls: list[tuple[str, str, int]]) -> bytes:
    registry = CollectorRegistry()
    registry.register(_Snapshot(routing, calls))
    return generate_latest(registry)
