"""``bench/agi_load.py`` does not rot: its simulated Asterisk drives a few sessions
through the service process (wired as ``callcenter serve`` wires it, on the test
PostgreSQL) and through the minimal responder, and every answered call has its row.

Only the plumbing is checked (no figure is asserted): the sessions ran, the
responder replayed the service's commands, the writer was flushed on request and
the report renders. The IVR's menus may change; the bench relies only on the IVR
answering and issuing commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SESSIONS = 20


@pytest.fixture
def agi_load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    import agi_load  # bench/, not a package

    return agi_load


async def test_the_bench_runs_sessions_through_the_service_and_the_minimal_responder(
    agi_load: ModuleType, pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_server_dsn)  # the bench makes its own database there
    args = agi_load.parse_args(["--concurrency", "5", "--sessions", str(SESSIONS),
                                "--media-ms", "20", "--no-speech"])
    bench = agi_load.Bench(args, tmp_path)
    try:
        await bench.db.start()
        served, baseline = await bench.level(5)
    finally:
        await bench.close()
    assert served.sessions == baseline.sessions == SESSIONS
    for phase in (served, baseline):
        assert [r.error for r in phase.results if r.error] == []
        assert len(phase.answers) == SESSIONS and phase.latencies
    assert served.writer.startswith("flushed=True pending=0")
    assert served.rows_lost == 0
    assert served.rss_mb and baseline.rss_mb
    # The responder sent every command the service sent in its first session.
    recorded = json.loads((tmp_path / "commands-5.json").read_text())
    assert recorded[0].startswith("ANSWER") or "ANSWER\n" in recorded
    assert {len(r.latencies) for r in baseline.results} == {len(recorded) - 1}
    table = agi_load.report([(served, baseline)])
    assert "5 service" in table and "5 minimal" in table
    assert agi_load.verdict([(served, baseline)]).startswith("verdict: ")
