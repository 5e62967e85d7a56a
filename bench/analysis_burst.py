"""The analysis after a burst of calls: 100 calls end within a few seconds (as after
100 concurrent calls), one ``callcenter worker`` at its default concurrency (one
call per core) analyses them. Goals: the first call to end is analysed within
1.5x the time it takes alone, and calls are taken in hang-up order within a
priority (every tenth call is a P1 safety call: those go first).

Both rounds run in the same private embedded PostgreSQL with the same worker
command, the same dev call for every call (``--call``, both legs linked, never
copied), so only the queue differs:

- solo: that call alone, from hang-up to its result (after a first call that
  loads the models);
- burst: ``--calls`` calls ending ``--spread`` seconds apart; the first one's
  time from hang-up to result, and the order the worker picked the jobs in
  (pgqueuer's log) against the order the calls ended.

    .venv/bin/python bench/analysis_burst.py [--calls 100] [--call d007] [--spread 0.03]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from procstat import log, run_interruptible, stop_service  # noqa: E402
from worker_scaling import CONSUMERS_PER_WORKER, Bench  # noqa: E402

from callcenter.db.store import PgStore  # noqa: E402
from callcenter.worker import default_concurrency  # noqa: E402

GOAL_FIRST = 1.5
SAFETY = 2  # the IVR's priority of a P1 safety call
EVERY_SAFETY = 10


class Burst(Bench):
    def __init__(self, work: Path, call: str) -> None:
        super().__init__(work, calls=1)
        self.dev = [d for d in self.dev if d.name == call]
        if not self.dev:
            raise SystemExit(f"no dev call {call}")
        self.worker: asyncio.subprocess.Process | None = None

    async def payload_log(self) -> None:
        """Keep each job's payload (its call id) by job id: pgqueuer's log has the id
        of a picked job, and the job row is gone once done. (This private database
        only.)"""
        assert self.pool is not None
        await self.pool.execute("""
            CREATE TABLE bench_job_payloads (job_id bigint PRIMARY KEY, payload bytea);
            CREATE FUNCTION bench_keep_payload() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO bench_job_payloads VALUES (NEW.id, NEW.payload);
                RETURN NEW;
            END $$;
            CREATE TRIGGER bench_keep_payload AFTER INSERT ON pgqueuer
                FOR EACH ROW EXECUTE FUNCTION bench_keep_payload();
        """)

    async def start_worker(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.dsn,
               "CALLCENTER_DATA_DIR": str(self.work / "data"),
               "CALLCENTER_RECORDINGS_DIR": str(self.recordings), "CALLCENTER_LOG_JSON": "true"}
        env.pop("CALLCENTER_CONFIG_FILE", None)
        with (self.work / "worker.log").open("wb") as out:
            self.worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callcenter", "worker", cwd=str(ROOT), env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)
        await self.until(lambda: self.connected(CONSUMERS_PER_WORKER), 120,
                         "the worker to connect", [self.worker])

    async def ended(self, prefix: str, count: int, spread_s: float) -> list[tuple[str, float]]:
        """``count`` calls ending one after another; (call id, hang-up time)."""
        assert self.pool is not None
        store = PgStore(self.pool)
        folder = self.dev[0].name
        ids = []
        for i in range(count):
            call_id = f"{prefix}-{i:03d}"
            await store.open_call(call_id, caller_number="13900000000", channel_id=call_id)
            safety = i % EVERY_SAFETY == EVERY_SAFETY - 1
            await store.update_call(call_id, stage="conversation", queue="repair",
                                    priority=SAFETY if safety else 0)
            for leg in ("caller", "agent"):
                await store.add_leg(call_id, leg, channel_id=f"{call_id}-{leg}",
                                    recording_name=f"{folder}/{leg}.wav")
            ids.append(call_id)
        out = []
        for call_id in ids:
            await store.finish_call(call_id, stage="conversation", hangup_by="caller")
            out.append((call_id, time.perf_counter()))
            await asyncio.sleep(spread_s)
        return out

    async def result_after(self, call_id: str, ended: float) -> float:
        await self.until(lambda: self.processed([call_id]), 3600, f"{call_id}'s result",
                         [self.worker] if self.worker else [])
        return time.perf_counter() - ended

    async def pick_order(self, ids: list[str]) -> list[str]:
        """The calls in the order the worker picked their jobs (pgqueuer's log)."""
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT convert_from(q.payload, 'UTF8') AS call_id, min(l.created) AS picked"
            " FROM pgqueuer_log l JOIN bench_job_payloads q USING (job_id)"
            " WHERE l.status = 'picked' GROUP BY 1 ORDER BY 2")
        wanted = set(ids)
        return [r["call_id"] for r in rows if r["call_id"] in wanted]


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="analysis-burst-") as folder:
        bench = Burst(Path(folder), args.call)
        try:
            await bench.start()
            await bench.payload_log()
            await bench.start_worker()
            # A first call loads the models (Vosk, the ticket judgement): not timed.
            (warm_id, warm_end), = await bench.ended("warm", 1, 0)
            await bench.result_after(warm_id, warm_end)
            (solo_id, solo_end), = await bench.ended("solo", 1, 0)
            solo = await bench.result_after(solo_id, solo_end)
            log(f"solo: {solo:.1f} s")
            burst = await bench.ended("burst", args.calls, args.spread)
            first = await bench.result_after(*burst[0])
            log(f"burst: the first call's result after {first:.1f} s")
            ids = [c for c, _ in burst]
            began = burst[0][1]
            await bench.until(lambda: bench.processed(ids), 3600, "the burst",
                              [bench.worker] if bench.worker else [])
            drained = time.perf_counter() - began
            picked = await bench.pick_order(ids)
        finally:
            await stop_service(bench.worker, grace_s=10)
            await bench.close()
    safety = [c for i, c in enumerate(ids) if i % EVERY_SAFETY == EVERY_SAFETY - 1]
    ordinary = [c for c in ids if c not in safety]
    in_order = {name: [c for c in picked if c in group] == group
                for name, group in (("P1", safety), ("others", ordinary))}
    # Safety calls queued behind ordinary ones: how many ordinary calls, ended
    # before it, each was picked after (it should pass all that were still waiting).
    first_safety_at = picked.index(safety[0]) if safety else -1
    print(f"\n{args.calls} calls of {args.call} ending {args.spread * 1000:.0f} ms apart,"
          f" one worker at --concurrency {default_concurrency()} ({os.cpu_count()} CPUs)")
    print(f"  solo: hang-up to result {solo:6.1f} s")
    print(f"  burst: the first call's hang-up to result {first:6.1f} s"
          f" = {first / solo:.2f}x solo (goal <= {GOAL_FIRST}x):"
          f" {'ok' if first <= GOAL_FIRST * solo else 'MISSED'}")
    print(f"  burst drained in {drained:.1f} s ({args.calls / drained * 60:.1f} calls/min)")
    print(f"  picked in hang-up order within a priority: P1 {in_order['P1']},"
          f" others {in_order['others']}")
    if safety:
        print(f"  the first P1 call: number {EVERY_SAFETY} to end, number"
              f" {first_safety_at + 1} to be picked")
    return 0 if in_order["P1"] and in_order["others"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--call", default="d007", help="the dev call every call is (d007: 78 s)")
    parser.add_argument("--spread", type=float, default=0.03, help="seconds between hang-ups")
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL"):
        parser.error("the bench makes its own embedded PostgreSQL; unset DATABASE_URL")
    return run_interruptible(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
