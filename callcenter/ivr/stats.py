"""IVR statistics per node: how callers fare at each menu and script.

Two sources, one vocabulary (the engine's :class:`~callcenter.ivr.engine.NodeEvent`
kinds): ``NodeCounts`` counts this process's events since it started (the
``callcenter_ivr_node_events_total`` counters at /metrics); ``node_figures``
turns the stored ``ivr_events`` rows of a period into per-node figures for
the API (pure).

Per node: ``entries``; ``choices`` by key and by speech; ``timeouts`` (no
input); ``invalid`` (a wrong key, speech that was no choice); ``hangups`` at
the node; ``transfers`` (left the IVR for a queue from the node), and the
rates a supervisor reads: how many entries ended in a timeout, an invalid
input or a hang-up, and the share of choices made by speech.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from callcenter.ivr.engine import NodeEvent

KINDS = ("entry", "choice", "timeout", "invalid", "transfer", "hangup")


@dataclass
class NodeCounts:
    """Events per (node, kind, via) in this process; read by /metrics."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, events: Iterable[NodeEvent]) -> None:
        for event in events:
            self.counts[(event.node, event.kind, event.via)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"connected": True, "node_events": [
            {"node": n, "kind": k, "via": v, "count": c}
            for (n, k, v), c in sorted(self.counts.items())]}


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def node_figures(rows: Iterable[tuple[str, str, str, str, int]]) -> dict[str, dict[str, Any]]:
    """(node, kind, via, choice, count) rows -> figures per node, nodes in first-seen
    order."""
    nodes: dict[str, dict[str, Any]] = {}
    for node, kind, via, choice, count in rows:
        figures = nodes.setdefault(node, _empty())
        if kind == "choice":
            figures["choices"][via or "key"] += count
            figures["by_choice"][choice] = figures["by_choice"].get(choice, 0) + count
        elif kind in KINDS:
            figures[_plural(kind)] += count
    for figures in nodes.values():
        entries = figures["entries"]
        choices = figures["choices"]["key"] + figures["choices"]["speech"]
        figures["timeout_rate"] = _rate(figures["timeouts"], entries)
        figures["invalid_rate"] = _rate(figures["invalid"], entries)
        figures["hangup_rate"] = _rate(figures["hangups"], entries)
        figures["speech_share"] = _rate(figures["choices"]["speech"], choices)
    return nodes


def _empty() -> dict[str, Any]:
    return {"entries": 0, "choices": {"key": 0, "speech": 0}, "by_choice": {},
            "timeouts": 0, "invalid": 0, "hangups": 0, "transfers": 0}


def _plural(kind: str) -> str:
    return {"entry": "entries", "invalid": "invalid"}.get(kind, kind + "s")
