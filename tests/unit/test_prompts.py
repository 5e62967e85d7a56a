"""`callcenter prompts`: one prompt list from two files, TTS engines, recorded
prompts, the manifest (only what changed is rendered) and the audio formats."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from callcenter import cli, prompts
from callcenter.audio import is_silent, read_wav, ulaw_encode
from callcenter.prompts import (
    MANIFEST_NAME,
    CommandEngine,
    EspeakEngine,
    Prompt,
    PromptError,
    build,
    collect_prompts,
)
from callcenter.sandbox.asterisk import IN_ROOT_MOH, IN_ROOT_SOUNDS, STAMP_NAME, AsteriskSandbox
from callcenter.settings import get_settings

MINUS_3_DBFS = round(10 ** (-3 / 20) * 32767)


def write_tone(path: Path, rate: int, seconds: float, amplitude: float = 0.3,
               channels: int = 1, freq: float = 440.0) -> None:
    t = np.arange(int(rate * seconds)) / rate
    mono = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    frames = np.repeat(mono[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())


class ToneEngine:
    """A stand-in TTS engine: a 16 kHz tone whose length follows the text."""

    def __init__(self, signature: str = "tone 1") -> None:
        self.signature = signature
        self.texts: list[str] = []

    def render(self, text: str, out_wav: Path) -> None:
        self.texts.append(text)
        write_tone(out_wav, 16000, 0.2 + 0.05 * len(text))


def files(folder: Path, text: str) -> Path:
    path = folder / "prompts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    menu = tmp_path / "menu.yaml"
    menu.write_text("timing: {max_tries: 3}\nprompts:\n  welcome: 您好。\n  main: 报修请按1。\n",
                    encoding="utf-8")
    return menu, files(tmp_path, "sorry: 对不起。\ngoodbye: 再见。\n")


# ---- collecting -------------------------------------------------------------------


def test_the_shipped_files_give_one_list() -> None:
    collected = collect_prompts()
    names = [p.name for p in collected]
    assert len(names) == len(set(names))
    sources = {p.name: p.source for p in collected}
    assert sources["welcome"] == prompts.MENU_FILE
    assert sources["sorry"] == prompts.PROMPTS_FILE
    assert {"main", "invalid", "silent_hello", "goodbye", "queue_wait", "callback",
            "position_before", "num_30"} <= set(names)
    # The old IVR names are gone with the old menu.
    assert not {"greeting", "menu", "no_input"} & set(names)


def test_menu_prompts_come_first(two_files: tuple[Path, Path]) -> None:
    collected = collect_prompts(*two_files)
    assert [p.name for p in collected] == ["welcome", "main", "sorry", "goodbye"]
    assert collected[0] == Prompt("welcome", "您好。", two_files[0])


def test_a_name_in_both_files_is_refused(tmp_path: Path, two_files: tuple[Path, Path]) -> None:
    menu, _ = two_files
    with pytest.raises(PromptError, match=r"'welcome' is defined in both .*menu\.yaml and "
                                          r".*prompts\.yaml"):
        collect_prompts(menu, files(tmp_path, "sorry: 对不起。\nwelcome: 欢迎。\n"))


def test_a_name_twice_in_one_file_is_refused(tmp_path: Path,
                                             two_files: tuple[Path, Path]) -> None:
    with pytest.raises(PromptError, match="key 'sorry' is given twice"):
        collect_prompts(two_files[0], files(tmp_path, "sorry: 对不起。\nsorry: 抱歉。\n"))


@pytest.mark.parametrize("line", ["Welcome: 您好。", "no-input: 您好。", "1st: 您好。",
                                  "'../x': 您好。"])
def test_names_must_be_sound_file_names(tmp_path: Path, two_files: tuple[Path, Path],
                                        line: str) -> None:
    with pytest.raises(PromptError, match="must be lower-case letters, digits and _"):
        collect_prompts(two_files[0], files(tmp_path, line + "\n"))


def test_a_prompt_needs_a_text(tmp_path: Path, two_files: tuple[Path, Path]) -> None:
    with pytest.raises(PromptError, match="prompt 'sorry' needs a text"):
        collect_prompts(two_files[0], files(tmp_path, "sorry:\n"))


def test_a_menu_file_without_prompts_is_refused(tmp_path: Path,
                                                two_files: tuple[Path, Path]) -> None:
    menu = tmp_path / "bare.yaml"
    menu.write_text("timing: {max_tries: 3}\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"bare.yaml \(prompts\): expected a mapping"):
        collect_prompts(menu, two_files[1])


# ---- building and the manifest ----------------------------------------------------


def test_build_writes_telephone_wav_and_ulaw(tmp_path: Path,
                                             two_files: tuple[Path, Path]) -> None:
    out = tmp_path / "sounds"
    report = build(collect_prompts(*two_files), out, ToneEngine())
    assert report.synthesised == ["welcome", "main", "sorry", "goodbye"]
    samples, rate = read_wav(out / "welcome.wav")
    assert rate == 8000 and samples.shape[1] == 1
    assert abs(int(np.abs(samples).max()) - MINUS_3_DBFS) <= 2  # normalised to -3 dBFS
    assert (out / "welcome.ulaw").read_bytes() == ulaw_encode(samples[:, 0])
    assert (out / MANIFEST_NAME).is_file()


def test_unchanged_prompts_are_not_rendered_again(tmp_path: Path,
                                                  two_files: tuple[Path, Path]) -> None:
    menu, others = two_files
    out = tmp_path / "sounds"
    engine = ToneEngine()
    build(collect_prompts(menu, others), out, engine)
    assert len(engine.texts) == 4

    report = build(collect_prompts(menu, others), out, engine)
    assert len(engine.texts) == 4 and not report.changed
    assert report.unchanged == ["welcome", "main", "sorry", "goodbye"]

    files(others.parent, "sorry: 非常抱歉。\ngoodbye: 再见。\n")
    report = build(collect_prompts(menu, others), out, engine)
    assert report.synthesised == ["sorry"] and engine.texts[-1] == "非常抱歉。"

    (out / "main.ulaw").unlink()  # a file lost: rendered again
    assert build(collect_prompts(menu, others), out, engine).synthesised == ["main"]

    assert build(collect_prompts(menu, others), out, engine, force=True).synthesised == [
        "welcome", "main", "sorry", "goodbye"]


def test_another_engine_renders_everything_again(tmp_path: Path,
                                                 two_files: tuple[Path, Path]) -> None:
    out = tmp_path / "sounds"
    build(collect_prompts(*two_files), out, ToneEngine("tone 1"))
    report = build(collect_prompts(*two_files), out, ToneEngine("tone 2"))
    assert len(report.synthesised) == 4 and report.engine == "tone 2"


def test_prompts_no_longer_defined_are_removed(tmp_path: Path,
                                               two_files: tuple[Path, Path]) -> None:
    menu, others = two_files
    out = tmp_path / "sounds"
    (out).mkdir()
    (out / "keep_me.wav").write_bytes(b"not ours")
    build(collect_prompts(menu, others), out, ToneEngine())
    files(others.parent, "sorry: 对不起。\n")
    report = build(collect_prompts(menu, others), out, ToneEngine())
    assert report.removed == ["goodbye"] and report.changed
    assert not (out / "goodbye.wav").exists() and not (out / "goodbye.ulaw").exists()
    assert (out / "keep_me.wav").is_file()  # not in the manifest: not ours to remove


def test_a_failure_keeps_what_was_rendered(tmp_path: Path,
                                           two_files: tuple[Path, Path]) -> None:
    class FailsOnSorry(ToneEngine):
        def render(self, text: str, out_wav: Path) -> None:
            if text == "对不起。":
                raise PromptError("engine broke")
            super().render(text, out_wav)

    out = tmp_path / "sounds"
    with pytest.raises(PromptError, match="engine broke"):
        build(collect_prompts(*two_files), out, FailsOnSorry())
    report = build(collect_prompts(*two_files), out, ToneEngine())
    assert report.unchanged == ["welcome", "main"]
    assert report.synthesised == ["sorry", "goodbye"]


def test_silent_engine_output_is_refused(tmp_path: Path, two_files: tuple[Path, Path]) -> None:
    class Silent(ToneEngine):
        def render(self, text: str, out_wav: Path) -> None:
            write_tone(out_wav, 16000, 1.0, amplitude=0.0)

    with pytest.raises(PromptError, match=r"prompt welcome .*: silent"):
        build(collect_prompts(*two_files), tmp_path / "sounds", Silent())


# ---- recorded prompts -------------------------------------------------------------


def test_a_recording_replaces_tts_converted_to_8_khz(tmp_path: Path,
                                                     two_files: tuple[Path, Path]) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    write_tone(recorded / "welcome.wav", 16000, 1.5, amplitude=0.25, channels=2)
    write_tone(recorded / "welcom.wav", 16000, 1.0)  # a typo: matches no prompt
    out = tmp_path / "sounds"
    engine = ToneEngine()

    report = build(collect_prompts(*two_files), out, engine, recorded_dir=recorded)
    assert report.recorded == ["welcome"]
    assert "您好。" not in engine.texts
    assert report.unmatched_recordings == ["welcom"]
    assert any("welcom.wav matches no prompt" in line for line in report.lines())
    samples, rate = read_wav(out / "welcome.wav")
    assert rate == 8000 and samples.shape == (12000, 1)  # 1.5 s at 8 kHz, mono
    # The recording keeps its own level (0.25 of full scale), not -3 dBFS.
    assert abs(int(np.abs(samples).max()) - round(0.25 * 32767)) < 200

    assert build(collect_prompts(*two_files), out, engine, recorded_dir=recorded).recorded == []
    write_tone(recorded / "welcome.wav", 22050, 1.0, amplitude=0.5)  # a new take
    report = build(collect_prompts(*two_files), out, engine, recorded_dir=recorded)
    assert report.recorded == ["welcome"]
    assert read_wav(out / "welcome.wav")[0].shape == (8000, 1)


def test_a_silent_or_broken_recording_is_refused(tmp_path: Path,
                                                 two_files: tuple[Path, Path]) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    write_tone(recorded / "sorry.wav", 8000, 1.0, amplitude=0.0)
    with pytest.raises(PromptError, match=r"recorded prompt .*sorry\.wav: silent"):
        build(collect_prompts(*two_files), tmp_path / "out", ToneEngine(), recorded_dir=recorded)
    (recorded / "sorry.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(PromptError, match=r"recorded prompt .*sorry\.wav: not an integer PCM WAV"):
        build(collect_prompts(*two_files), tmp_path / "out", ToneEngine(), recorded_dir=recorded)


# ---- the command engine -----------------------------------------------------------

# Writes a 22.05 kHz sine to {out}; fails unless {text} and standard input are the text.
SINE_SCRIPT = (
    "import math, struct, sys, wave\n"
    "out, text = sys.argv[1], sys.argv[2]\n"
    "w = wave.open(out, 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)\n"
    "w.writeframes(b''.join(struct.pack('<h', int(9000 * math.sin(i / 10)))"
    " for i in range(22050)))\n"
    "w.close()\n"
    "sys.exit(text != sys.stdin.read())\n"
)


def sine_command() -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(SINE_SCRIPT)} {{out}} {{text}}"


def test_command_engine_renders_through_a_user_command(
    tmp_path: Path, two_files: tuple[Path, Path],
) -> None:
    engine = CommandEngine(sine_command())
    report = build(collect_prompts(*two_files), tmp_path / "out", engine)
    assert report.synthesised == ["welcome", "main", "sorry", "goodbye"]
    assert report.engine.startswith("command ")
    samples, rate = read_wav(tmp_path / "out" / "main.wav")
    assert rate == 8000 and len(samples) == 8000  # one second
    assert abs(int(np.abs(samples).max()) - MINUS_3_DBFS) <= 2


def test_command_engine_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"needs an \{out\} placeholder"):
        CommandEngine("espeak-ng {text}")
    failing = CommandEngine(f"{shlex.quote(sys.executable)} -c "
                            "'import sys; sys.exit(\"no voice\")' {out}")
    with pytest.raises(PromptError, match="failed \\(1\\): no voice"):
        failing.render("您好", tmp_path / "x.wav")


def test_engine_choice() -> None:
    assert isinstance(prompts.make_engine(None, None, None), EspeakEngine)
    assert isinstance(prompts.make_engine(None, "tts {out}", None), CommandEngine)
    with pytest.raises(PromptError, match="--engine command needs --command"):
        prompts.make_engine("command", None, None)
    with pytest.raises(PromptError, match="--command is for --engine command"):
        prompts.make_engine("espeak-ng", "tts {out}", None)


# ---- u-law ------------------------------------------------------------------------


def test_ulaw_known_values() -> None:
    # G.711 u-law (the reference coder): silence is 0xFF, full scale 0x80 / 0x00.
    samples = np.array([0, 1, -1, 1000, -1000, 8000, 32767, -32768], dtype=np.int16)
    assert ulaw_encode(samples) == bytes([0xFF, 0xFF, 0x7E, 0xCE, 0x4E, 0xA0, 0x80, 0x00])


def test_ulaw_matches_the_reference_coder_for_every_sample() -> None:
    audioop = pytest.importorskip("audioop", reason="audioop left Python in 3.13")
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(every) == audioop.lin2ulaw(every.astype("<i2").tobytes(), 2)


# ---- espeak-ng, for real ----------------------------------------------------------


def espeak_or_skip() -> EspeakEngine:
    """espeak-ng on PATH, else in a built sandbox root (chroot needs root)."""
    root = AsteriskSandbox(cache_dir=get_settings().cache_dir).root
    if shutil.which("espeak-ng"):
        return EspeakEngine()
    if (root / "usr/bin/espeak-ng").is_file() and os.geteuid() == 0:
        return EspeakEngine(sandbox_root=root)
    pytest.skip("espeak-ng: not on PATH, and no sandbox root to chroot into")


def test_espeak_renders_a_real_prompt(tmp_path: Path) -> None:
    engine = espeak_or_skip()
    welcome = next(p for p in collect_prompts() if p.name == "welcome")
    report = build([welcome], tmp_path, engine)
    assert report.synthesised == ["welcome"] and "voice cmn" in report.engine
    with wave.open(str(tmp_path / "welcome.wav"), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
    samples, _ = read_wav(tmp_path / "welcome.wav")
    assert len(samples) > 8000  # over a second of speech
    assert not is_silent(samples[:, 0], 8000)
    assert abs(int(np.abs(samples).max()) - MINUS_3_DBFS) <= 2


# ---- the sandbox and the command line ---------------------------------------------


def test_sandbox_renders_into_its_root_with_hold_music(tmp_path: Path) -> None:
    box = AsteriskSandbox(cache_dir=tmp_path)
    sounds = box.root / IN_ROOT_SOUNDS
    sounds.mkdir(parents=True)
    for leftover in ("greeting.wav", "greeting.ulaw", STAMP_NAME):  # the shell renderer's
        (sounds / leftover).write_text("old")
    report = box.render_prompts(ToneEngine())
    assert report.changed and not (sounds / "greeting.wav").exists()
    assert (sounds / "welcome.wav").is_file() and (sounds / "num_30.ulaw").is_file()
    hold = box.root / IN_ROOT_MOH / "queue_wait.ulaw"
    assert hold.read_bytes() == (sounds / "queue_wait.ulaw").read_bytes()
    assert not box.render_prompts(ToneEngine()).changed


def test_cli_list_and_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prompts", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["welcome", "callcenter/ivr/menu.yaml"] for line in listed)
    assert any(line.split()[:2] == ["sorry", "docker/asterisk/prompts.yaml"] for line in listed)

    out = tmp_path / "sounds"
    assert cli.main(["prompts", "build", "--out", str(out), "--command", sine_command()]) == 0
    printed = capsys.readouterr().out
    assert f"synthesised {len(listed)} (command " in printed
    assert cli.main(["prompts", "build", "--out", str(out), "--command", sine_command()]) == 0
    assert f"unchanged {len(listed)}" in capsys.readouterr().out

    assert cli.main(["prompts", "build", "--out", str(out), "--engine", "command"]) == 2
    assert "--engine command needs --command" in capsys.readouterr().err


def test_standalone_build_needs_an_output_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert prompts.main(["build"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
