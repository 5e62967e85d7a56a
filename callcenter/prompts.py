"""Prompt audio for Asterisk: ``callcenter prompts build`` and ``callcenter prompts list``.

Every prompt Asterisk plays as ``callcenter/<name>`` comes from one list: the IVR's
prompts (``prompts:`` of ``callcenter/ivr/menu.yaml``) and the others, played by
the dialplan and the call distributor (``docker/asterisk/prompts.yaml``: sorry,
goodbye, queue announcements, numbers, call-back, queue_wait). A name in both
files is an error.

Each prompt becomes ``<name>.wav`` (8 kHz mono 16-bit PCM) and ``<name>.ulaw``
(raw G.711 u-law: Asterisk plays it on u-law calls without transcoding) in the
output folder. The audio comes from, first match wins:

- a recorded prompt: ``<name>.wav`` in the recorded-prompts folder (default
  ``docker/asterisk/recorded-prompts``), converted to 8 kHz mono 16-bit and
  checked; its level is left as recorded. This is how a deployment replaces the
  synthetic voice;
- an offline TTS engine (``TtsEngine``): ``espeak-ng`` (Mandarin voice ``cmn``;
  on this machine's PATH, otherwise inside the Asterisk sandbox's Debian root
  through chroot) or ``command`` (any engine, as a command template with
  ``{text}`` and ``{out}``). Its WAV, whatever its format, is resampled here and
  normalised to -3 dBFS peak so every prompt is equally loud.

Reading, resampling, WAV writing and u-law encoding are numpy
(``callcenter.audio``), so neither sox nor the ``audioop`` module (gone in Python
3.13) is needed. A manifest in the output folder (``.prompts-manifest.json``)
holds a digest of what made each prompt (text and engine, or the recording's
bytes): a build renders only what changed and removes the files of prompts that
are gone.

The Asterisk image runs this module by itself (``python3 -m callcenter.prompts``,
Debian's python3-numpy and python3-yaml: see docker/asterisk/Dockerfile), so it
imports nothing of the package but ``audio`` and ``errors``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from callcenter.errors import CliError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Int16Array = npt.NDArray[np.int16]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
MENU_FILE = PACKAGE_DIR / "ivr" / "menu.yaml"
PROMPTS_FILE = REPO_ROOT / "docker" / "asterisk" / "prompts.yaml"
RECORDED_DIR = REPO_ROOT / "docker" / "asterisk" / "recorded-prompts"
MANIFEST_NAME = ".prompts-manifest.json"

PEAK_DBFS = -3.0  # TTS prompts are normalised to this peak, as sox's "gain -n -3" did
# Bump when the conversion changes: every prompt is then rendered again.
FORMAT_VERSION = 1
ESPEAK_VOICE = "cmn"
ESPEAK_SPEED = 150  # words per minute
TOOL_TIMEOUT_S = 120.0
# Asterisk sound names: the file name without extension, and our prompt keys.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class PromptError(CliError):
    """A prompt cannot be collected or rendered; a one-line reason."""


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    text: str
    source: Path  # the file that defines it


# ---- collecting -------------------------------------------------------------------


def collect_prompts(menu_file: Path = MENU_FILE, prompts_file: Path = PROMPTS_FILE
                    ) -> list[Prompt]:
    """The menu file's ``prompts:`` then prompts.yaml's entries, names checked; a
    name defined twice (in one file or in both) is a PromptError."""
    found: dict[str, Prompt] = {}
    for path, texts in ((menu_file, _texts(menu_file, "prompts")),
                        (prompts_file, _texts(prompts_file, None))):
        for name, text in texts.items():
            if name in found:
                raise PromptError(f"prompt {name!r} is defined in both {found[name].source} "
                                  f"and {path}")
            found[name] = Prompt(name, text, path)
    return list(found.values())


def _texts(path: Path, section: str | None) -> dict[str, str]:
    """``name: text`` pairs of a file, or of one mapping in it."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise PromptError(f"cannot read prompts from {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: {' '.join(str(exc).split())}") from exc
    where = f"{path}" + (f" ({section})" if section else "")
    if section is not None:
        data = (data or {}).get(section) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not data:
        raise PromptError(f"{where}: expected a mapping of prompt name to text")
    texts = {}
    for name, text in data.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise PromptError(f"{where}: prompt name {name!r} must be lower-case letters, "
                              "digits and _ (it becomes a file name)")
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"{where}: prompt {name!r} needs a text")
        texts[name] = text.strip()
    return texts


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a prompt given twice in
    one file is a mistake we want to hear about."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# ---- TTS engines ------------------------------------------------------------------


class TtsEngine(Protocol):
    """Writes a WAV file (any rate, width, channels) saying ``text``."""

    @property
    def signature(self) -> str:
        """What the audio depends on besides the text (engine, version, voice): a
        change renders every prompt again."""
        ...

    def render(self, text: str, out_wav: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class ToolPlace:
    """Where a tool runs: this machine (``root`` None) or a Debian root by chroot."""

    root: Path | None = None

    def run(self, argv: Sequence[str]) -> str:
        command = [*(["chroot", str(self.root)] if self.root else []), *argv]
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=TOOL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PromptError(f"{argv[0]} failed: {exc}") from exc
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            raise PromptError(f"{argv[0]} failed ({done.returncode}): {tail}")
        return done.stdout

    @contextmanager
    def scratch(self) -> Iterator[tuple[Path, str]]:
        """A temporary folder: (its path here, its path as the tool sees it)."""
        parent = self.root / "tmp" if self.root else None
        with tempfile.TemporaryDirectory(prefix="callcenter-prompt-", dir=parent) as folder:
            here = Path(folder)
            there = "/" + str(here.relative_to(self.root)) if self.root else folder
            yield here, there


class EspeakEngine:
    """espeak-ng's Mandarin voice. Runs where it is found: on PATH, else inside
    ``sandbox_root`` (the Asterisk sandbox's Debian root, which installs it; chroot
    needs root). Found on first use: a build of recorded prompts only needs none."""

    def __init__(self, sandbox_root: Path | None = None, voice: str = ESPEAK_VOICE,
                 speed: int = ESPEAK_SPEED) -> None:
        self.sandbox_root = sandbox_root
        self.voice = voice
        self.speed = speed

    @cached_property
    def place(self) -> ToolPlace:
        if shutil.which("espeak-ng"):
            return ToolPlace()
        root = self.sandbox_root
        if root is not None and (root / "usr/bin/espeak-ng").is_file():
            if os.geteuid() != 0:
                raise PromptError(f"espeak-ng is only in the sandbox root {root}: chroot "
                                  "needs root (or install espeak-ng here)")
            return ToolPlace(root)
        raise PromptError("espeak-ng not found on PATH nor in a built Asterisk sandbox: "
                          "install espeak-ng, build the sandbox, or use --engine command")

    @cached_property
    def signature(self) -> str:
        # "eSpeak NG text-to-speech: 1.52.0  Data at: /usr/lib/...": the version only
        answer = self.place.run(["espeak-ng", "--version"])
        version = re.search(r"\d+(?:\.\d+)+", answer)
        return (f"espeak-ng {version.group() if version else answer.strip()[:60]} "
                f"voice {self.voice} speed {self.speed}")

    def render(self, text: str, out_wav: Path) -> None:
        with self.place.scratch() as (here, there):
            # The text goes in a file: nothing in it can be read as an option.
            (here / "text.txt").write_text(text + "\n", encoding="utf-8")
            self.place.run(["espeak-ng", "-v", self.voice, "-s", str(self.speed),
                            "-w", f"{there}/speech.wav", "-f", f"{there}/text.txt"])
            shutil.copyfile(here / "speech.wav", out_wav)


class CommandEngine:
    """Another engine as a command template: ``{out}`` (required) is the WAV to
    write, ``{text}`` the prompt's text; the text is also on standard input. Split
    like a shell line but run without a shell: a text is always one argument."""

    def __init__(self, template: str) -> None:
        try:
            self.argv = shlex.split(template)
        except ValueError as exc:
            raise PromptError(f"--command {template!r}: {exc}") from exc
        if not self.argv or not any("{out}" in arg for arg in self.argv):
            raise PromptError(f"--command {template!r} needs an {{out}} placeholder")
        self.template = template

    @property
    def signature(self) -> str:
        return f"command {self.template}"

    def render(self, text: str, out_wav: Path) -> None:
        argv = [arg.replace("{text}", text).replace("{out}", str(out_wav)) for arg in self.argv]
        try:
            done = subprocess.run(argv, input=text, capture_output=True, text=True,
                                  timeout=TOOL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PromptError(f"--command {argv[0]} failed: {exc}") from exc
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            raise PromptError(f"--command {argv[0]} failed ({done.returncode}): {tail}")


def make_engine(kind: str | None, command: str | None, sandbox_root: Path | None
                ) -> TtsEngine:
    """The engine of the command line: ``command`` when a template is given."""
    kind = kind or ("command" if command else "espeak-ng")
    if kind == "command":
        if not command:
            raise PromptError("--engine command needs --command TEMPLATE")
        return CommandEngine(command)
    if command:
        raise PromptError("--command is for --engine command")
    return EspeakEngine(sandbox_root)


# ---- audio ------------------------------------------------------------------------
# callcenter.audio (numpy) is imported when audio is made, not when the command line
# starts: `callcenter <anything>` builds this module's arguments.


def _telephone_audio(wav: Path, *, normalise: bool, what: str) -> Int16Array:
    """A WAV as 8 kHz 16-bit samples, checked: long enough and not silent."""
    from callcenter import audio

    try:
        signal, rate = audio.read_pcm_mono(wav)
    except audio.AudioError as exc:  # its message starts with the (temporary) file name
        raise PromptError(f"{what}: {str(exc).removeprefix(f'{wav}: ')}") from exc
    samples = audio.to_telephone(signal, rate, peak_dbfs=PEAK_DBFS if normalise else None)
    if len(samples) < audio.TELEPHONE_RATE // 10:
        raise PromptError(f"{what}: shorter than 0.1 s")
    if audio.is_silent(samples, audio.TELEPHONE_RATE):
        raise PromptError(f"{what}: silent")
    return samples


def _write_outputs(samples: Int16Array, out_dir: Path, name: str) -> None:
    """<name>.wav and <name>.ulaw, each replaced whole (a player never reads half)."""
    from callcenter import audio

    wav, ulaw = out_dir / f".{name}.wav.part", out_dir / f".{name}.ulaw.part"
    audio.write_wav(wav, samples, audio.TELEPHONE_RATE)
    ulaw.write_bytes(audio.ulaw_encode(samples))
    os.replace(wav, out_dir / f"{name}.wav")
    os.replace(ulaw, out_dir / f"{name}.ulaw")


# ---- building ---------------------------------------------------------------------


@dataclass
class BuildReport:
    """What a build did, by prompt name."""

    out_dir: Path
    engine: str = ""  # the TTS engine's signature, when it was used
    synthesised: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # converted from recordings
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unmatched_recordings: list[str] = field(default_factory=list)  # name.wav of no prompt

    @property
    def changed(self) -> bool:
        return bool(self.synthesised or self.recorded or self.removed)

    def lines(self) -> list[str]:
        lines = [f"prompts in {self.out_dir}:"]
        if self.synthesised:
            lines.append(f"  synthesised {len(self.synthesised)} ({self.engine}): "
                         + ", ".join(self.synthesised))
        if self.recorded:
            lines.append(f"  from recordings {len(self.recorded)}: " + ", ".join(self.recorded))
        if self.removed:
            lines.append(f"  removed {len(self.removed)} (no longer defined): "
                         + ", ".join(self.removed))
        lines.append(f"  unchanged {len(self.unchanged)}")
        lines += [f"  warning: recorded {name}.wav matches no prompt (ignored)"
                  for name in self.unmatched_recordings]
        return lines


def build(prompts: Sequence[Prompt], out_dir: Path, engine: TtsEngine, *,
          recorded_dir: Path | None = None, force: bool = False) -> BuildReport:
    """Render the prompts that changed since the last build into ``out_dir`` (all
    with ``force``), remove those no longer defined, and say what was done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_NAME
    previous = _load_manifest(manifest_path)
    current: dict[str, str] = {}
    report = BuildReport(out_dir=out_dir)
    recordings = _recordings(recorded_dir)
    report.unmatched_recordings = sorted(set(recordings) - {p.name for p in prompts})
    try:
        for prompt in prompts:
            recording = recordings.get(prompt.name)
            digest = (_digest(recorded=_file_digest(recording)) if recording
                      else _digest(text=prompt.text, engine=engine.signature))
            if not force and previous.get(prompt.name) == digest and _outputs_exist(
                    out_dir, prompt.name):
                report.unchanged.append(prompt.name)
            elif recording:
                _write_outputs(_from_recording(recording), out_dir, prompt.name)
                report.recorded.append(prompt.name)
            else:
                _write_outputs(_synthesise(engine, prompt), out_dir, prompt.name)
                report.synthesised.append(prompt.name)
                report.engine = engine.signature
            current[prompt.name] = digest
        report.removed = _remove_gone(out_dir, set(previous) - set(current))
    finally:  # what was rendered before a failure is not rendered again
        kept = {n: d for n, d in previous.items() if n not in current and n not in report.removed}
        _save_manifest(manifest_path, {**kept, **current})
    return report


def _synthesise(engine: TtsEngine, prompt: Prompt) -> Int16Array:
    what = f"prompt {prompt.name} ({engine.signature})"
    with tempfile.TemporaryDirectory(prefix="callcenter-tts-") as folder:
        raw = Path(folder) / "speech.wav"
        engine.render(prompt.text, raw)
        if not raw.is_file():
            raise PromptError(f"{what}: the engine wrote no WAV file")
        return _telephone_audio(raw, normalise=True, what=what)


def _from_recording(path: Path) -> Int16Array:
    # Left at the recording's own level: a studio's levels are deliberate.
    return _telephone_audio(path, normalise=False, what=f"recorded prompt {path}")


def _recordings(folder: Path | None) -> dict[str, Path]:
    if folder is None or not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.wav")) if path.is_file()}


def _digest(**what: str) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **what}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs_exist(out_dir: Path, name: str) -> bool:
    return all((out_dir / f"{name}{suffix}").is_file() for suffix in (".wav", ".ulaw"))


def _remove_gone(out_dir: Path, names: set[str]) -> list[str]:
    for name in names:
        for suffix in (".wav", ".ulaw"):
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
    return sorted(names)


def _load_manifest(path: Path) -> dict[str, str]:
    """name -> digest of the last build; an unreadable manifest renders everything."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data["prompts"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_manifest(path: Path, digests: dict[str, str]) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps({"format": FORMAT_VERSION, "prompts": dict(sorted(
        digests.items()))}, indent=1) + "\n", encoding="utf-8")
    os.replace(part, path)


# ---- command line -----------------------------------------------------------------

BUILD_HELP = """\
Render every prompt (the menu file's prompts and docker/asterisk/prompts.yaml) to
<name>.wav (8 kHz mono 16-bit) and <name>.ulaw, only those whose text, engine or
recording changed. A <name>.wav in the recorded-prompts folder replaces the TTS
voice for that prompt."""


def add_arguments(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    """The ``build`` and ``list`` actions (``args.prompts_action``), for
    ``callcenter prompts`` and ``python -m callcenter.prompts``."""
    actions = parser.add_subparsers(dest="prompts_action", required=True,
                                    metavar="{build,list}")
    build_cmd = actions.add_parser("build", help="render the prompts' audio",
                                   description=BUILD_HELP)
    build_cmd.add_argument("--out", type=Path, metavar="DIR", help=out_help)
    build_cmd.add_argument("--engine", choices=["espeak-ng", "command"],
                           help="TTS engine (default: espeak-ng, Mandarin voice; on PATH, "
                                "else inside the Asterisk sandbox's root)")
    build_cmd.add_argument("--command", metavar="TEMPLATE",
                           help="another TTS engine (implies --engine command): a command "
                                "line with {out} (the WAV to write) and {text}; the text is "
                                "also on standard input")
    build_cmd.add_argument("--recorded", type=Path, metavar="DIR",
                           help="recorded prompts, <name>.wav, used instead of TTS "
                                "(default: docker/asterisk/recorded-prompts)")
    build_cmd.add_argument("--force", action="store_true",
                           help="render every prompt, changed or not")
    actions.add_parser("list", help="every prompt: name, file, text")


def list_lines(prompts: Sequence[Prompt]) -> list[str]:
    name_width = max((len(p.name) for p in prompts), default=0)
    file_width = max((len(_shown(p.source)) for p in prompts), default=0)
    return [f"{p.name:{name_width}}  {_shown(p.source):{file_width}}  {p.text}"
            for p in prompts]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def recorded_dir_of(args: argparse.Namespace) -> Path | None:
    """--recorded, else the default folder; a folder given but missing is an error."""
    if args.recorded is not None and not args.recorded.is_dir():
        raise PromptError(f"--recorded {args.recorded}: no such folder")
    return args.recorded if args.recorded is not None else RECORDED_DIR


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m callcenter.prompts build --out DIR`` where only numpy and PyYAML
    are installed (the Asterisk image); ``callcenter prompts`` elsewhere."""
    parser = argparse.ArgumentParser(prog="python -m callcenter.prompts")
    add_arguments(parser, out_help="output folder (required here; `callcenter prompts "
                                   "build` defaults to the Asterisk sandbox's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.prompts_action == "list":
            print("\n".join(list_lines(collect_prompts())))
            return 0
        if args.out is None:
            raise PromptError("give --out DIR")
        report = build(collect_prompts(), args.out, make_engine(args.engine, args.command, None),
                       recorded_dir=recorded_dir_of(args), force=args.force)
    except PromptError as exc:
        print(f"prompts: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
