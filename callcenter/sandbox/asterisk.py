"""A real Asterisk for development and end-to-end tests, in a Debian sid chroot.

The root is built once with debootstrap into the cache folder and reused; a
stamp file holds a hash of the recipe, so changing the package list rebuilds it.
``start()`` installs the project's configuration (``docker/asterisk/``), renders
the prompts that changed (``callcenter/prompts.py``: the menu file's and
``docker/asterisk/prompts.yaml``'s, espeak-ng inside the root), bind-mounts the
recordings folder (read-write, mode 0750) and the shared test-data folder
(read-only, at ``/srv/shared``) and starts Asterisk with umask 027 (recordings are
not readable by other users; a running Asterisk with a wider umask is restarted),
which shares the host's loopback (ARI on 127.0.0.1:8088).

Needs root (debootstrap, chroot, mount). Command line::

    python -m callcenter.sandbox.asterisk build|start|stop|status
    python -m callcenter.sandbox.asterisk cli "core show channels"
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from callcenter import prompts
from callcenter.permissions import SERVICE_UMASK, prepare_recordings_dir
from callcenter.settings import default_cache_dir

if TYPE_CHECKING:
    from callcenter.prompts import BuildReport, TtsEngine
    from callcenter.settings import Settings

log = logging.getLogger("callcenter.sandbox")

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "docker" / "asterisk"
SUITE = "sid"
# sip-tester is SIPp (callcenter/sandbox/sipp.py: SIP callers and agent phones).
PACKAGES = ("asterisk", "asterisk-modules", "espeak-ng", "sox", "sip-tester")
# Bump when the build steps change in a way the package list does not show.
RECIPE_VERSION = "1"
STAMP_NAME = ".callcenter-stamp"
# Installed on the host when debootstrap is missing.
HOST_PACKAGES = ("debootstrap", "debian-archive-keyring")
# The root is built with the usual umask (apt's _apt user reads what it installs),
# whatever the calling process (callcenter demo runs with SERVICE_UMASK).
BUILD_UMASK = 0o022

# Paths inside the root.
IN_ROOT_RECORDINGS = "var/spool/asterisk/recording"
IN_ROOT_SHARED = "srv/shared"
IN_ROOT_SOUNDS = "usr/share/asterisk/sounds/callcenter"
IN_ROOT_MOH = "var/lib/asterisk/moh/callcenter"
# Not var/run: that is an absolute symlink to /run, which would leave the root.
IN_ROOT_TLS = "var/lib/asterisk/tls"  # http.conf tlscertfile / tlsprivatekey
IN_ROOT_PIDFILE = "run/asterisk/asterisk.pid"
IN_ROOT_LOG = "var/log/asterisk/messages"
IN_ROOT_STDOUT = "var/log/asterisk/foreground.log"
SHARED_MOUNT_POINT = "/" + IN_ROOT_SHARED
START_TIMEOUT_S = 30.0


class SandboxError(RuntimeError):
    """The sandbox could not be built, started or stopped."""


def recipe_hash() -> str:
    text = "\n".join([RECIPE_VERSION, SUITE, *PACKAGES])
    return hashlib.sha256(text.encode()).hexdigest()


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources or sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.is_file():
        for line in sources_list.read_text(errors="replace").splitlines():
            parts = line.split()
            uris = [p for p in parts[1:] if "://" in p] if parts[:1] == ["deb"] else []
            if uris and uris[0].rstrip("/").endswith("/debian"):
                return uris[0]
    raise SandboxError("no Debian mirror found in /etc/apt/sources.list(.d)")


def run(
    cmd: list[str], *, check: bool = True, timeout: float | None = None, umask: int = -1
) -> str:
    """Run a command, log it, return its stdout; raise SandboxError on failure.
    ``umask`` (when >= 0) is the command's umask."""
    log.debug("run: %s", " ".join(cmd))
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        umask=umask,
    )
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise SandboxError(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
    return proc.stdout


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in /proc/mounts order."""
    prefix = str(path)
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        point = fields[1].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def unmount_all(path: Path) -> None:
    """Unmount everything mounted at or below ``path``, last mounted first."""
    for point in reversed(mounts_under(path)):
        log.info("unmounting %s", point)
        for attempt in range(5):
            proc = subprocess.run(["umount", point], capture_output=True, text=True)
            if proc.returncode == 0:
                break
            time.sleep(0.1 * (attempt + 1))
        else:
            log.warning("umount %s failed (%s), detaching lazily", point, proc.stderr.strip())
            run(["umount", "-l", point])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and ") Z" in stat.read_text())


def processes_in_root(root: Path) -> list[int]:
    """Ids of the processes whose root directory is ``root`` (chrooted there)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == str(root):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def process_umask(pid: int) -> int | None:
    """A running process's umask (Linux's /proc/<pid>/status), None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the Asterisk sandbox needs root (debootstrap, chroot, mount)")


class AsteriskSandbox:
    """Build, start and stop the chrooted Asterisk; see the module docstring."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        recordings_dir: Path | None = None,
        shared_dir: Path | None = None,
        ari_url: str = "http://127.0.0.1:8088",
        ari_user: str = "callcenter",
        ari_password: str = "callcenter",
        config_dir: Path = CONFIG_DIR,
    ) -> None:
        cache = Path(cache_dir or default_cache_dir()).resolve()
        self.root = cache / f"asterisk-{SUITE}"
        self.recordings_dir = Path(recordings_dir or REPO_ROOT / "var" / "recordings").resolve()
        self.shared_dir = Path(shared_dir or REPO_ROOT.parent / "shared").resolve()
        self.ari_url = ari_url.rstrip("/")
        self.ari_user = ari_user
        self.ari_password = ari_password
        self.config_dir = Path(config_dir)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- context manager -------------------------------------------------

    def __enter__(self) -> AsteriskSandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- build -----------------------------------------------------------

    @property
    def stamp(self) -> Path:
        return self.root / STAMP_NAME

    def is_built(self) -> bool:
        return self.stamp.is_file() and self.stamp.read_text().strip() == recipe_hash()

    def build(self) -> None:
        """Build the root unless an up-to-date one is cached; make the HTTPS
        certificate once."""
        if self.is_built():
            log.info("Asterisk root is up to date: %s", self.root)
            if os.geteuid() == 0:
                self.tls_certificate()
            return
        require_root()
        self.stop()
        started = time.monotonic()
        tmp = self.root.with_name(self.root.name + ".tmp")
        self._discard(tmp)
        self._bootstrap(tmp)
        try:
            self._mount_system(tmp)
            self._install_packages(tmp)
        finally:
            unmount_all(tmp)
        (tmp / STAMP_NAME).write_text(recipe_hash() + "\n")
        self._discard(self.root)
        tmp.rename(self.root)
        self.tls_certificate()
        log.info("built %s in %.0f s", self.root, time.monotonic() - started)

    def _discard(self, path: Path) -> None:
        if path.exists():
            unmount_all(path)
            log.info("removing %s", path)
            shutil.rmtree(path)

    def _bootstrap(self, target: Path) -> None:
        if shutil.which("debootstrap") is None:
            log.info("installing debootstrap with apt-get")
            apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
            run([*apt, "update"], umask=BUILD_UMASK)
            run([*apt, "install", "-y", "--no-install-recommends", *HOST_PACKAGES],
                umask=BUILD_UMASK)
        mirror = debian_mirror()
        log.info("debootstrap %s into %s from %s", SUITE, target, mirror)
        target.parent.mkdir(parents=True, exist_ok=True)
        run(["debootstrap", "--variant=minbase", SUITE, str(target), mirror], umask=BUILD_UMASK)
        policy = target / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)

    def _install_packages(self, target: Path) -> None:
        apt = ["chroot", str(target), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        log.info("installing %s in the root", " ".join(PACKAGES))
        run([*apt, "-o", "Acquire::Check-Valid-Until=false", "update"], umask=BUILD_UMASK)
        run([*apt, "install", "-y", "--no-install-recommends", *PACKAGES], umask=BUILD_UMASK)
        run([*apt, "clean"], umask=BUILD_UMASK)

    # -- mounts ----------------------------------------------------------

    def _mount_system(self, root: Path) -> None:
        for name in ("proc", "dev"):
            if str(root / name) not in mounts_under(root / name):
                (root / name).mkdir(exist_ok=True)
                if name == "proc":
                    run(["mount", "-t", "proc", "proc", str(root / name)])
                else:
                    run(["mount", "--bind", "/dev", str(root / name)])

    def _mount_data(self) -> None:
        """Bind the recordings (rw, mode 0750) and shared (ro) folders, replacing other
        binds."""
        prepare_recordings_dir(self.recordings_dir)
        if not self.shared_dir.is_dir():
            raise SandboxError(f"shared folder not found: {self.shared_dir}")
        self._ensure_bind(self.recordings_dir, self.root / IN_ROOT_RECORDINGS, readonly=False)
        self._ensure_bind(self.shared_dir, self.root / IN_ROOT_SHARED, readonly=True)

    def _ensure_bind(self, source: Path, point: Path, *, readonly: bool) -> None:
        if str(point) in mounts_under(point):
            if os.path.samefile(source, point):
                return
            log.info("re-binding %s to %s", point, source)
            unmount_all(point)
        point.mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", str(source), str(point)])
        if readonly:
            run(["mount", "-o", "remount,bind,ro", str(point)])

    # -- configuration ---------------------------------------------------

    def install_config(self) -> bool:
        """Replace the root's /etc/asterisk with the project's; False if unchanged."""
        confs = sorted(self.config_dir.glob("*.conf"))
        digest = hashlib.sha256(b"".join(c.name.encode() + c.read_bytes() for c in confs))
        etc = self.root / "etc/asterisk"
        stamp = etc / STAMP_NAME
        if stamp.is_file() and stamp.read_text().strip() == digest.hexdigest():
            return False
        if etc.exists():
            shutil.rmtree(etc)
        etc.mkdir(parents=True)
        for conf in confs:
            shutil.copy2(conf, etc / conf.name)
        stamp.write_text(digest.hexdigest() + "\n")
        log.info("installed %d config files from %s", len(confs), self.config_dir)
        return True

    def render_prompts(self, engine: TtsEngine | None = None, *,
                       recorded_dir: Path | None = None, force: bool = False) -> BuildReport:
        """Render every prompt (the menu file's and prompts.yaml's) into the root's
        sounds folder, only those that changed (callcenter/prompts.py), and refresh
        the music-on-hold copy of queue_wait. espeak-ng runs inside the root unless
        this machine has it."""
        sounds = self.root / IN_ROOT_SOUNDS
        self._forget_shell_rendered_prompts(sounds)
        report = prompts.build(
            prompts.collect_prompts(prompts_file=self.config_dir / "prompts.yaml"), sounds,
            engine or prompts.EspeakEngine(sandbox_root=self.root),
            recorded_dir=self.config_dir / "recorded-prompts" if recorded_dir is None
            else recorded_dir,
            force=force)
        hold_music = self.root / IN_ROOT_MOH / "queue_wait.ulaw"
        rendered = (sounds / "queue_wait.ulaw").read_bytes()
        if not hold_music.is_file() or hold_music.read_bytes() != rendered:
            hold_music.parent.mkdir(parents=True, exist_ok=True)
            hold_music.write_bytes(rendered)
        return report

    def _update_prompts(self) -> bool:
        """render_prompts, logged when something changed; False if nothing did."""
        report = self.render_prompts()
        if report.changed:
            log.info("%s", "\n".join(report.lines()))
        return report.changed

    @staticmethod
    def _forget_shell_rendered_prompts(sounds: Path) -> None:
        """The shell renderer before callcenter/prompts.py left a stamp and no
        manifest: start clean, so prompts it made that are gone do not linger."""
        stamp = sounds / STAMP_NAME
        if not stamp.is_file():
            return
        for path in [*sounds.glob("*.wav"), *sounds.glob("*.ulaw"), stamp]:
            path.unlink()

    # -- start / stop ----------------------------------------------------

    def pid(self) -> int | None:
        """Asterisk's process id when it is running from this root."""
        try:
            pid = int((self.root / IN_ROOT_PIDFILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) and pid in processes_in_root(self.root) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        """Start Asterisk (reusing a running one) and wait until ARI answers."""
        require_root()
        pid = self.pid()
        if pid is not None and self._umask_is_private(pid):
            self._refresh()
            log.info("reusing the running Asterisk (pid %s)", pid)
            return
        if pid is not None:  # started before recordings were private: start it again
            log.warning("the running Asterisk (pid %s) has umask %s: its recordings would "
                        "be readable by everyone; restarting it", pid,
                        oct(process_umask(pid) or 0))
            self.stop()
        self.build()
        if self.ari_info() is not None:
            raise SandboxError(f"something else already answers ARI at {self.ari_url}")
        unmount_all(self.root)  # what a crashed run left behind
        started = time.monotonic()
        try:
            self._mount_system(self.root)
            self._mount_data()
            self.install_config()
            self._update_prompts()
            self.tls_certificate()
            self._isolate_names()
            self._launch()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Asterisk is up in %.1f s (pid %s)", time.monotonic() - started, self.pid())

    def tls_certificate(self) -> Path:
        """The HTTPS/WSS certificate of http.conf (the browser softphone), made once:
        self-signed for localhost and 127.0.0.1. Returns the certificate's path."""
        folder = self.root / IN_ROOT_TLS
        cert, key = folder / "asterisk.pem", folder / "asterisk.key"
        if cert.is_file() and key.is_file():
            return cert
        folder.mkdir(parents=True, exist_ok=True)
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SandboxError("openssl is needed to make the HTTPS certificate "
                               "(apt install openssl)")
        run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)])
        key.chmod(0o600)
        log.info("made a self-signed HTTPS certificate for the softphone: %s", cert)
        return cert

    def _isolate_names(self) -> None:
        """The sandbox reaches nothing but loopback, so name lookups must fail at once:
        Asterisk looks up this machine's name (and A.ROOT-SERVERS.NET) for every
        call's RTP, and a resolver that times out (5 s) stalls PJSIP's task
        queues under load. The machine's own name resolves to loopback."""
        hostname = socket.gethostname()
        (self.root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost\n")
        (self.root / "etc/resolv.conf").write_text(
            "# the sandbox has no DNS: lookups fail at once (callcenter/sandbox/asterisk.py)\n"
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    @staticmethod
    def _umask_is_private(pid: int) -> bool:
        umask = process_umask(pid)
        return umask is None or umask & SERVICE_UMASK == SERVICE_UMASK

    def _refresh(self) -> None:
        """Bring a running Asterisk in line with this sandbox's folders and config."""
        self.wait_ready()
        self._mount_data()
        self._isolate_names()
        changed = self.install_config()
        if self._update_prompts() or changed:
            log.info("configuration changed: core reload")
            self.cli("core reload")

    def _launch(self) -> None:
        (self.root / IN_ROOT_PIDFILE).parent.mkdir(parents=True, exist_ok=True)
        (self.root / IN_ROOT_PIDFILE).unlink(missing_ok=True)
        for name in (IN_ROOT_LOG, IN_ROOT_STDOUT):
            (self.root / name).unlink(missing_ok=True)
        with open(self.root / IN_ROOT_STDOUT, "wb") as out:
            self._proc = subprocess.Popen(
                ["chroot", str(self.root), "/usr/sbin/asterisk", "-f"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=SERVICE_UMASK,  # recordings (MixMonitor) 0640, their folders 0750
            )  # fmt: skip

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ari_info() is not None:
                return
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                raise SandboxError(f"Asterisk exited with {proc.returncode}\n{self.log_tail()}")
            time.sleep(0.2)
        raise SandboxError(f"ARI did not answer within {timeout:.0f} s\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop Asterisk (gracefully, then by force) and unmount everything."""
        pid = self.pid()
        if pid is not None:
            log.info("stopping Asterisk (pid %s)", pid)
            try:
                self.cli("core stop now", timeout=10)
            except (SandboxError, subprocess.TimeoutExpired) as exc:
                log.warning("core stop now failed: %s", exc)
            self._wait_exit(pid, 10.0)
        self._kill_leftovers()
        proc = self._proc
        if proc is not None:
            proc.wait(timeout=5)
            self._proc = None
        if self.root.exists():
            unmount_all(self.root)

    def _wait_exit(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _kill_leftovers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = processes_in_root(self.root) if self.root.exists() else []
            for pid in pids:
                log.warning("sending %s to pid %s still in the root", sig.name, pid)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            for pid in pids:
                self._wait_exit(pid, 5.0)

    # -- talking to Asterisk ---------------------------------------------

    def cli(self, command: str, timeout: float = 30) -> str:
        """Run an Asterisk CLI command (``asterisk -rx``) and return its output."""
        if not self.is_running():
            raise SandboxError("Asterisk is not running")
        cmd = ["chroot", str(self.root), "/usr/sbin/asterisk", "-rx", command]
        return run(cmd, timeout=timeout)

    def ari_info(self) -> dict | None:
        """``GET /ari/asterisk/info`` with our credentials, or None if it fails."""
        token = base64.b64encode(f"{self.ari_user}:{self.ari_password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.ari_url}/ari/asterisk/info", headers={"Authorization": f"Basic {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return dict(json.load(response))
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in (IN_ROOT_LOG, IN_ROOT_STDOUT):
            path = self.root / name
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- /{name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts) or "(no Asterisk log)"

    def status(self) -> str:
        info = self.ari_info()
        version = (info or {}).get("system", {}).get("version", "?")
        return (
            f"root: {self.root} (built: {self.is_built()})\n"
            f"running: pid {self.pid()}\n"
            f"ARI {self.ari_url}: {'Asterisk ' + version if info else 'not answering'}\n"
            f"mounts: {', '.join(mounts_under(self.root)) or 'none'}"
        )


def sandbox_from_settings(settings: Settings, **overrides: Any) -> AsteriskSandbox:
    """The sandbox the service's settings describe (cache, recordings, ARI user)."""
    params: dict[str, Any] = dict(
        cache_dir=settings.cache_dir,
        recordings_dir=settings.recordings,
        shared_dir=settings.shared_dir,
        ari_url=settings.ari_url,
        ari_user=settings.ari_user,
        ari_password=settings.ari_password,
    )
    params.update(overrides)
    return AsteriskSandbox(**params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callcenter.sandbox.asterisk")
    parser.add_argument("action", choices=["build", "start", "stop", "status", "cli"])
    parser.add_argument("command", nargs="?", help="CLI command for 'cli'")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--recordings-dir", type=Path)
    parser.add_argument("--shared-dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from callcenter.settings import get_settings

    settings = get_settings()
    overrides = {
        name: value
        for name, value in (
            ("cache_dir", args.cache_dir),
            ("recordings_dir", args.recordings_dir),
            ("shared_dir", args.shared_dir),
        )
        if value
    }
    sandbox = sandbox_from_settings(settings, **overrides)
    try:
        if args.action == "cli":
            print(sandbox.cli(args.command or "core show version"), end="")
        elif args.action == "status":
            print(sandbox.status())
        else:
            getattr(sandbox, args.action)()
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
