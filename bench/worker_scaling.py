"""Workers that scale out: one batch of calls through 1, 2 and N ``callcenter worker``
processes against one PostgreSQL; calls processed per minute for each, and the
speed-up over one worker (goals: 2 workers >= 1.8x one; on a 16-core machine,
16 workers >= 14x one).

Each round places the same dev calls (both legs, the shared audio linked, never
copied) as new finished calls into a private embedded PostgreSQL once every
worker of the round is connected, and times them until the last one is
processed. Workers run with ``--concurrency 1`` (one recognizer each), so N
workers decode N calls at once. A round ends with its last call, while the other
workers are idle: with few calls per worker that tail, not the scaling, sets the
figure (8 calls: 1.78-1.90x on two cores in runs minutes apart), so a round has
16 calls by default.

This machine's speed drifts by 10-15 % over minutes (one worker took 272 s and
310 s for the same batch, a quarter of an hour apart), as much as the figure's
margin. So each worker count runs twice, in mirrored order (1, 2, 2, 1 workers):
a steady drift adds as much to each count's mean, and the figure compares the
means; the two rounds of each count are printed, so what drift remained shows.
``--once`` runs each count once.

    .venv/bin/python bench/worker_scaling.py                   # 1,2,2,1 workers, 16 calls
    .venv/bin/python bench/worker_scaling.py --workers 1,2,16 --calls 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from procstat import (  # noqa: E402
    log,
    private_postgres,
    run_interruptible,
    stop_service,
    tree_cpu_s,
)

from callcenter.db.connect import create_pool  # noqa: E402
from callcenter.db.migrate import migrate  # noqa: E402
from callcenter.db.store import PgStore  # noqa: E402
from callcenter.settings import SHARED_DIR  # noqa: E402
from callcenter.worker import WORKER_APPLICATION  # noqa: E402

GOAL_TWO = 1.8
CONSUMERS_PER_WORKER = 2  # calls and notices


@dataclass(frozen=True, slots=True)
class Round:
    seconds: float
    cpu_s: float  # the worker processes'
    decode_cpu_s: float  # as the workers report it (the "processed" events)


class Bench:
    def __init__(self, work: Path, calls: int) -> None:
        self.work = work
        self.recordings = work / "recordings"
        self.dev = sorted(p for p in (SHARED_DIR / "scenarios" / "dev").iterdir() if p.is_dir())
        self.calls = calls
        self.pg: object = None
        self.dsn = ""
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pg = await asyncio.to_thread(private_postgres, self.work)
        self.dsn = str(self.pg.get_uri())  # type: ignore[attr-defined]
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        self.pool = await create_pool(self.dsn, max_size=4)
        self.recordings.mkdir()
        for folder in self.dev:
            (self.recordings / folder.name).mkdir()
            for leg in ("caller", "agent"):
                (self.recordings / folder.name / f"{leg}.wav").symlink_to(folder / f"{leg}.wav")

    async def round(self, workers: int, number: int) -> Round:
        """From queuing the batch to its last call processed: the seconds, the
        workers' CPU seconds, and the decode's (the workers' own figure)."""
        env = {**os.environ, "DATABASE_URL": self.dsn,
               "CALLCENTER_DATA_DIR": str(self.work / f"data-{number}"),
               "CALLCENTER_RECORDINGS_DIR": str(self.recordings), "CALLCENTER_LOG_JSON": "true"}
        env.pop("CALLCENTER_CONFIG_FILE", None)
        logs = self.work / f"round-{number}.log"
        procs = []
        with logs.open("wb") as out:
            for _ in range(workers):
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "callcenter", "worker", "--concurrency", "1",
                    cwd=str(ROOT), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True))
        try:
            await self.until(lambda: self.connected(workers * CONSUMERS_PER_WORKER), 120,
                             f"{workers} workers to connect", procs)
            ids = await self.queue(f"r{number}")
            began, cpu = time.perf_counter(), sum(tree_cpu_s(p.pid) for p in procs)
            await self.until(lambda: self.processed(ids), 3600, "the batch", procs)
            seconds = time.perf_counter() - began
            cpu = sum(tree_cpu_s(p.pid) for p in procs) - cpu
            return Round(seconds, cpu, await self.decode_cpu(ids))
        finally:
            await asyncio.gather(*(stop_service(p, grace_s=10) for p in procs))

    async def queue(self, prefix: str) -> list[str]:
        """The batch as calls that just ended (their jobs queued as at hang-up)."""
        assert self.pool is not None
        store = PgStore(self.pool)
        ids = []
        for i in range(self.calls):
            folder = self.dev[i % len(self.dev)]
            call_id = f"{prefix}-{i:03d}"
            await store.open_call(call_id, caller_number="13900000000", channel_id=call_id)
            await store.update_call(call_id, stage="conversation", queue="repair")
            for leg in ("caller", "agent"):
                await store.add_leg(call_id, leg, channel_id=f"{call_id}-{leg}",
                                    recording_name=f"{folder.name}/{leg}.wav")
            ids.append(call_id)
        for call_id in ids:  # all at once, as a busy hour's hang-ups would
            await store.finish_call(call_id, stage="conversation", hangup_by="caller")
        return ids

    async def decode_cpu(self, ids: list[str]) -> float:
        """The CPU seconds the workers report for decoding the batch."""
        assert self.pool is not None
        return float(await self.pool.fetchval(
            "SELECT coalesce(sum((data->>'cpu_s')::float), 0) FROM call_events"
            " WHERE kind = 'processed' AND call_id = ANY($1::text[])", ids))

    async def connected(self, consumers: int) -> bool:
        assert self.pool is not None
        return int(await self.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            WORKER_APPLICATION)) >= consumers

    async def processed(self, ids: list[str]) -> bool:
        assert self.pool is not None
        done = await self.pool.fetchval(
            "SELECT count(*) FROM calls WHERE id = ANY($1::text[]) AND status IN"
            " ('processed', 'failed')", ids)
        return int(done) == len(ids)

    async def until(self, check: object, within_s: float, what: str,
                    procs: Sequence[asyncio.subprocess.Process]) -> None:
        deadline = time.monotonic() + within_s
        while not await check():  # type: ignore[operator]
            if any(p.returncode is not None for p in procs):
                raise RuntimeError(f"a worker exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.pg is not None:
            await asyncio.to_thread(self.pg.cleanup)  # type: ignore[attr-defined]


def round_order(workers: Sequence[int], once: bool) -> list[int]:
    """Each count once, or twice in mirrored order, so that a steady drift in the
    machine's speed weighs the same on every count's mean."""
    return list(workers) if once else [*workers, *reversed(workers)]


async def run(args: argparse.Namespace) -> int:
    rounds: dict[int, list[Round]] = {}
    with tempfile.TemporaryDirectory(prefix="worker-scaling-") as folder:
        bench = Bench(Path(folder), args.calls)
        try:
            await bench.start()
            for number, workers in enumerate(round_order(args.workers, args.once)):
                log(f"{workers} worker(s): {args.calls} calls")
                done = await bench.round(workers, number)
                rounds.setdefault(workers, []).append(done)
                log(f"{workers} worker(s): {done.seconds:.1f} s")
        finally:
            await bench.close()
    report(rounds, args.calls)
    return 0


def report(rounds: dict[int, list[Round]], calls: int) -> None:
    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    seconds = {w: mean([r.seconds for r in rs]) for w, rs in rounds.items()}
    one = seconds.get(1)
    print(f"\n{calls} dev calls (both legs) per round, workers at --concurrency 1, "
          f"{os.cpu_count()} CPUs; seconds: the mean of the rounds (each round's in "
          "brackets); CPU seconds a call: the workers' in all, and the decode's")
    for workers, rs in rounds.items():
        speedup = f"{one / seconds[workers]:.2f}x one worker" if one else ""
        each = ", ".join(f"{r.seconds:.1f}" for r in rs)
        cpu = mean([r.cpu_s for r in rs]) / calls
        decode = mean([r.decode_cpu_s for r in rs]) / calls
        print(f"  {workers:>3} worker(s): {seconds[workers]:7.1f} s ({each}), "
              f"{calls / seconds[workers] * 60:6.1f} calls/min  {speedup:17}  CPU a call "
              f"{cpu:5.2f} s, decode {decode:5.2f} s")
    if one and 2 in seconds:
        two = one / seconds[2]
        print(f"verdict: 2 workers {two:.3f}x one (goal >= {GOAL_TWO}x): "
              f"{'ok' if two >= GOAL_TWO else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--calls", type=int, default=16, help="calls per round")
    parser.add_argument("--once", action="store_true",
                        help="each worker count once, not twice in mirrored order")
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",") if w]
    if os.environ.get("DATABASE_URL"):
        parser.error("the bench makes its own embedded PostgreSQL; unset DATABASE_URL")
    return run_interruptible(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
