"""``callcenter serve`` that cannot start, as a user runs it (a subprocess): one
line on stderr starting ``callcenter: ``, exit status 2, no traceback, no
password (README: CLI errors are one line and exit status 2)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "Pw-startup-7Kq"
CLOSED_DSN = f"postgresql://cc:{PASSWORD}@127.0.0.1:1/calls"  # nothing listens on port 1
TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("CALLCENTER_") and k != "DATABASE_URL"}
    clean.update({"CALLCENTER_DATA_DIR": str(tmp_path / "data"),
                  "CALLCENTER_WEB_PORT": str(free_port()),
                  "CALLCENTER_AGI_PORT": str(free_port()),
                  "DATABASE_URL": CLOSED_DSN,
                  "CALLCENTER_DATABASE_CONNECT_ATTEMPTS": "1"})
    clean.update(env)
    clean["PYTHONFAULTHANDLER"] = "1"  # a hang is reported with where it hung
    with subprocess.Popen(
        [sys.executable, "-m", "callcenter", "serve", *args], env=clean, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack on stderr
            out, err = proc.communicate()
            pytest.fail(f"serve did not end within {TIMEOUT_S} s (load average "
                        f"{os.getloadavg()}); where it was:\n{err[-6000:]}\n{out[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def one_line_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """The failure report, checked: rc 2, one stderr line, nothing secret."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("callcenter: ")
    assert "Traceback" not in proc.stderr and PASSWORD not in proc.stderr + proc.stdout
    return lines[0]


NO_TELEPHONY = ("--no-telephony", "--workers", "0")


def test_web_port_taken(tmp_path: Path, taken_port: int) -> None:
    line = one_line_failure(serve(tmp_path, *NO_TELEPHONY, CALLCENTER_WEB_PORT=str(taken_port)))
    assert f"127.0.0.1:{taken_port}" in line and "in use" in line


def test_agi_port_taken_fails_before_anything_starts(tmp_path: Path, taken_port: int) -> None:
    line = one_line_failure(serve(tmp_path, CALLCENTER_AGI_PORT=str(taken_port)))
    assert f"127.0.0.1:{taken_port}" in line and "in use" in line


def test_database_unreachable(tmp_path: Path) -> None:
    line = one_line_failure(serve(tmp_path, *NO_TELEPHONY))
    assert "database unreachable" in line and "postgresql://cc:***@127.0.0.1:1/calls" in line


def test_database_unreachable_after_retries_reports_once(tmp_path: Path) -> None:
    """With retries each failed attempt is a log line (the password in none of
    them); the report is still the last line, and the only one of its kind."""
    proc = serve(tmp_path, *NO_TELEPHONY, CALLCENTER_DATABASE_CONNECT_ATTEMPTS="2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stderr
    lines = proc.stderr.splitlines()
    assert [line for line in lines if line.startswith("callcenter: ")] == lines[-1:]
    assert "after 2 attempts" in lines[-1]


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [(f"postgresql://cc:{PASSWORD}@127.0.0.1:notaport/calls", "cc:***@127.0.0.1:notaport"),
     (f"host=127.0.0.1 password={PASSWORD} dbname=calls", "password=***")],
)
def test_malformed_database_url(tmp_path: Path, dsn: str, shown: str) -> None:
    line = one_line_failure(serve(tmp_path, *NO_TELEPHONY, DATABASE_URL=dsn))
    assert "DSN" in line and shown in line


def test_broken_queues_file(tmp_path: Path) -> None:
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  repair: [unclosed\n   x: : y\n", encoding="utf-8")
    line = one_line_failure(serve(tmp_path, CALLCENTER_QUEUES_FILE=str(queues)))
    assert str(queues) in line and "line 3" in line


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line_failure(
        serve(tmp_path, *NO_TELEPHONY, CALLCENTER_DATA_DIR=str(blocker / "data")))
    assert str(blocker / "data") in line and "Not a directory" in line


def test_recordings_folder_is_made_private_at_start(tmp_path: Path, taken_port: int) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    recordings.chmod(0o777)
    proc = serve(tmp_path, *NO_TELEPHONY, CALLCENTER_WEB_PORT=str(taken_port),
                 CALLCENTER_RECORDINGS_DIR=str(recordings))
    assert proc.returncode == 2 and "in use" in proc.stderr.splitlines()[-1]
    assert recordings.stat().st_mode & 0o777 == 0o750
    assert "mode 777 -> 750" in proc.stderr  # said once, in the log
