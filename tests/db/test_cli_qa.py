"""``callcenter qa score`` and ``qa rescore`` as a user runs them: the real CLI in a
subprocess, on a transcript file and on calls stored in a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg

from callcenter.qa.engine import RULE_IDS, load_rules
from tests.db.test_qa_review import TURNS, _scored_call
from tests.unit.test_cli_analyze import _env, ok_document


def _qa(*args: str | Path, data_dir: Path, database_url: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callcenter", "qa", *map(str, args)],
                          env=_env(data_dir, database_url), capture_output=True, text=True,
                          timeout=300, check=False)


def _transcript(path: Path) -> Path:
    path.write_text(json.dumps({"id": "t1", "ivr_digits": "1", "caller": {"phone": "139"},
                                "timeline": [{"who": w, "start": a, "end": b, "text": t}
                                             for w, a, b, t in TURNS]}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def test_score_a_transcript_file_and_refuse_bad_input(tmp_path: Path) -> None:
    doc = ok_document(_qa("score", _transcript(tmp_path / "call.json"), data_dir=tmp_path))
    assert doc["rules_version"] == load_rules().version
    verdicts = {r["id"]: r["passed"] for r in doc["rules"]}
    assert set(verdicts) == set(RULE_IDS) and verdicts["polite_address"] is False
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    proc = _qa("score", broken, data_dir=tmp_path)
    assert proc.returncode == 2 and "not a transcript file" in proc.stderr
    assert "Traceback" not in proc.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: {nonsense_rule: {weight: 1}}\n", encoding="utf-8")
    proc = _qa("score", tmp_path / "call.json", "--rules", rules, data_dir=tmp_path)
    assert proc.returncode == 2 and "unknown QA rule ids" in proc.stderr


async def test_rescore_stored_calls_reports_the_changes(db_pool: asyncpg.Pool, db_dsn: str,
                                                        tmp_path: Path) -> None:
    await _scored_call(db_pool, "cli1")
    stored = ok_document(_qa("score", "cli1", data_dir=tmp_path, database_url=db_dsn))
    assert stored["rules_version"] == load_rules().version
    lenient = tmp_path / "rules.yaml"
    lenient.write_text(load_rules().text.replace("    min_count: 1\n", "    min_count: 9\n", 1),
                       encoding="utf-8")
    report = ok_document(_qa("rescore", "--since", "2000-01-01", "--rules", lenient,
                             "--details", data_dir=tmp_path, database_url=db_dsn))
    assert (report["calls"], report["changed"]) == (1, 1)
    assert report["rule_changes"] == {"polite_address": 1}
    assert report["details"][0]["call_id"] == "cli1"
    assert await db_pool.fetchval("SELECT rules_version FROM qa_results") == report[
        "rules_version"]
    proc = _qa("rescore", "--since", "yesterday", data_dir=tmp_path, database_url=db_dsn)
    assert proc.returncode == 2 and "not a date" in proc.stderr
