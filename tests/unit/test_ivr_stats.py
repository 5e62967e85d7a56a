"""Per-node IVR figures and the capture loop's speech test (pure)."""

from __future__ import annotations

import numpy as np

from callcenter.ivr.engine import NodeEvent
from callcenter.ivr.listen import MIN_SPEECH_S, ends_voiced, speech_seconds
from callcenter.ivr.stats import NodeCounts, node_figures


def test_node_figures_count_and_rate_each_node() -> None:
    rows = [("main", "entry", "", "", 10), ("main", "choice", "key", "repair", 5),
            ("main", "choice", "speech", "complaint", 3), ("main", "timeout", "", "", 4),
            ("main", "invalid", "key", "", 2), ("main", "hangup", "", "", 1),
            ("main", "transfer", "", "complaint", 3), ("silent", "entry", "", "", 1)]
    nodes = node_figures(rows)
    main = nodes["main"]
    assert list(nodes) == ["main", "silent"]
    assert (main["entries"], main["choices"], main["timeouts"], main["invalid"],
            main["hangups"], main["transfers"]) == (10, {"key": 5, "speech": 3}, 4, 2, 1, 3)
    assert main["by_choice"] == {"repair": 5, "complaint": 3}
    assert (main["timeout_rate"], main["invalid_rate"], main["hangup_rate"],
            main["speech_share"]) == (40.0, 20.0, 10.0, 37.5)
    assert nodes["silent"]["speech_share"] is None  # no choice made: no share


def test_node_counts_snapshot() -> None:
    counts = NodeCounts()
    counts.add([NodeEvent("main", "entry"), NodeEvent("main", "entry"),
                NodeEvent("main", "choice", "speech", "agent")])
    assert counts.snapshot()["node_events"] == [
        {"node": "main", "kind": "choice", "via": "speech", "count": 1},
        {"node": "main", "kind": "entry", "via": "", "count": 2}]


def test_speech_is_told_from_silence_and_clicks() -> None:
    rate = 8000
    silence = np.zeros(rate, np.int16)
    loud = (np.sin(np.arange(rate) / 3) * 8000).astype(np.int16)
    click = silence.copy()
    click[100:400] = 9000  # 37 ms
    assert speech_seconds(silence, rate) == 0
    assert speech_seconds(loud, rate) >= MIN_SPEECH_S
    assert speech_seconds(click, rate) < MIN_SPEECH_S
    assert ends_voiced(np.concatenate([silence, loud]), rate)
    assert not ends_voiced(np.concatenate([loud, silence]), rate)
