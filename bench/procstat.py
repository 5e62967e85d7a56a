"""What the benchmarks share: progress lines, percentiles, CPU time read from
/proc (a process, a server with its children, the whole machine), a private
embedded PostgreSQL, and a run that Ctrl-C or SIGTERM stop with its clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def proc_cpu_s(pid: int, *, children: bool = False) -> float:
    """utime + stime (and waited-for children's, when asked) of a process, seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_cpu_s(pid: int) -> float:
    """A server and its live children (PostgreSQL: postmaster + backends); exited
    children are in the parent's waited-for times."""
    return proc_cpu_s(pid, children=True) + sum(proc_cpu_s(c) for c in child_pids(pid))


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values[:8]) - values[3] - values[4], sum(values[:8])


def private_postgres(work: Path) -> Any:
    """A temporary embedded PostgreSQL (pgserver) in ``work``/pg/data, deleted when
    the returned server is cleaned up; ``str(server.get_uri())`` is its DSN."""
    warnings.filterwarnings("ignore", module="platformdirs")  # no XDG_RUNTIME_DIR: harmless
    import pgserver

    folder = work / "pg"
    folder.mkdir()
    work.chmod(0o755)
    folder.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    return pgserver.get_server(folder / "data", cleanup_mode="delete")


def postmaster_pid(work: Path) -> int | None:
    """The process id of :func:`private_postgres`'s postmaster, while it runs."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((work / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    return None


def run_interruptible(run: Callable[[], Awaitable[int]]) -> int:
    """``asyncio.run`` of ``run()``; SIGINT/SIGTERM cancel it so its ``finally``
    blocks clean up, and the exit status is then 130."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await run()
        except asyncio.CancelledError:
            print("interrupted: cleaned up", file=sys.stderr)
            return 130

    return asyncio.run(guarded())


async def stop_service(proc: asyncio.subprocess.Process | None, *, grace_s: float = 20) -> None:
    """SIGTERM a service the bench started, and SIGKILL it if it does not end in time."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
