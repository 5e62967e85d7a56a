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


class _Transcription(Collector):
    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = self.figures
        jobs = GaugeMetricFamily("callcenter_transcription_jobs",
                                 "Call analysis jobs: queued, picked (being processed), "
                                 "failed (held for a person)", labels=["state"])
        for state, count in f["jobs"].items():
            jobs.add_metric([state], count)
        yield jobs
        hour = " of the calls processed in the last hour"
        yield _gauge("callcenter_transcription_calls_last_hour", "Calls processed in the "
                     "last hour", f["calls"])
        yield _gauge("callcenter_transcription_audio_seconds_last_hour", "Audio seconds" + hour,
                     f["audio_s"])
        yield _gauge("callcenter_transcription_real_time_factor_last_hour",
                     "Decode CPU seconds per audio second" + hour, f["real_time_factor"])
        lag = GaugeMetricFamily("callcenter_transcription_lag_seconds_last_hour",
                                "From hang-up to result" + hour, labels=["quantile"])
        for name, quantile in (("p50", "0.5"), ("p95", "0.95"), ("max", "1")):
            if f["lag_s"][name] is not None:
                lag.add_metric([quantile], f["lag_s"][name])
        yield lag


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    if value is not None:
        gauge.add_metric([], value)
    return gauge


def render(routing: dict[str, Any], calls: list[tuple[str, str, int]] | None,
           pending_writes: int = 0, ivr: dict[str, Any] | None = None,
           transcription: dict[str, Any] | None = None) -> bytes:
    """``calls`` None: the database did not answer (live figures are served anyway).
    ``ivr``: the IVR's per-node counts (``NodeCounts.snapshot``); ``transcription``:
    ``asr.figures.transcription_figures`` over the last hour."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(routing, calls, pending_writes))
    registry.register(_IvrNodes((ivr or {}).get("node_events", [])))
    if transcription is not None:
        registry.register(_Transcription(transcription))
    return generate_latest(registry)
