"""Spoken menu choices: grammar files, text -> choice mapping (pure, no model), and
recognition of real clips through MenuRecognizer and ``callcenter ivr recognize``
(marked ``asr``: they load the Vosk model)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callcenter.asr.model import ModelNotFound, model_vocabulary
from callcenter.audio import AudioError, read_mono, resample, write_wav
from callcenter.ivr.grammar_build import build_all
from callcenter.ivr.grammars import (
    NO_CHOICE,
    GrammarError,
    MenuGrammar,
    PhraseMatch,
    check_against_menu,
    declared_choices,
    expand_template,
    family_phrases,
    grammar_from_dict,
    load_families,
    load_grammar,
    load_menu_grammars,
    match_choice,
    segment,
)
from callcenter.ivr.menu import EMERGENCY, default_menu
from callcenter.ivr.speech import (
    Heard,
    MenuRecognizer,
    Recognition,
    SecondOpinion,
)
from callcenter.prompts import EspeakEngine
from callcenter.sandbox.asterisk import AsteriskSandbox
from callcenter.settings import PROJECT_ROOT, SHARED_DIR, get_settings
from callcenter.text import normalise

OWN_DATA = PROJECT_ROOT / "tests" / "data" / "ivr"
OWN_UTTERANCES = OWN_DATA / "own_utterances.tsv"
CLIPS = SHARED_DIR / "scenarios" / "ivr"
REAL_SPEECH = SHARED_DIR / "realspeech" / "wav8k"
EMERGENCIES = ("fire", "gas_leak", "flooding", "lift_trapped")


def own_utterances(name: str = "own_utterances.tsv") -> list[tuple[str, str, str]]:
    with (OWN_DATA / name).open(encoding="utf-8", newline="") as fh:
        rows = csv.reader((line for line in fh if not line.startswith("#")), delimiter="\t")
        return [(menu, choice, text) for menu, choice, text in rows]


# -- the shipped grammars ----------------------------------------------------------------


def test_shipped_grammars_declare_exactly_the_menu_choices() -> None:
    grammars = load_menu_grammars()
    assert set(grammars) == {"main", "repair"}
    assert set(grammars["main"].choices) == {
        "repair", "complaint", "consultation", "agent", "repeat", "back", *EMERGENCIES}
    assert set(grammars["repair"].choices) == {
        EMERGENCY, "repair", "agent", "repeat", "back", *EMERGENCIES}


def test_emergencies_take_precedence_in_both_grammars() -> None:
    for grammar in load_menu_grammars().values():
        assert list(grammar.choices)[:4] == list(EMERGENCIES)


def test_grammar_files_are_built_from_the_families() -> None:
    """The JSON files are generated: same phrases (spaces aside) as the family file."""
    families = load_families()
    for name, grammar in load_menu_grammars().items():
        built = family_phrases(families, name)
        assert list(built) == list(grammar.choices)
        for choice, phrases in grammar.choices.items():
            assert [normalise(p) for p in phrases] == built[choice], (name, choice)


@pytest.mark.parametrize(("menu", "choice", "text"), [
    *own_utterances(), *own_utterances("own_long_choices.tsv"),
    *own_utterances("own_non_choices.tsv")])
def test_own_utterances_map_to_their_choice(menu: str, choice: str, text: str) -> None:
    assert match_choice(text, menu) == choice


def test_vosk_grammar_ends_with_unk() -> None:
    grammar = load_grammar("main")
    phrases = json.loads(grammar.vosk_grammar())
    assert phrases[-1] == "[unk]"
    assert phrases[:-1] == grammar.phrases()
    assert "我 要 报修" in phrases


# -- mapping text to a choice ----------------------------------------------------------

TOY = MenuGrammar("toy", {
    "fire": ("着火", "着火 了"),
    "repair": ("报修", "我 要 报修", "水管 漏水"),
    "complaint": ("投诉", "我 要 投诉"),
    "flooding": ("漏水 很大",),
})


@pytest.mark.parametrize(("text", "choice"), [
    ("我 要 报修", "repair"),  # exact
    ("我要报修。", "repair"),  # spaces and punctuation do not count
    ("[unk] 投诉 [unk]", "complaint"),
    ("喂 我 想 报修 谢谢", "repair"),  # contained
    ("我 要 投诉 报修 的 师傅", "complaint"),  # the longest phrase wins
    ("水管 漏水 很大", "flooding"),  # an emergency named anywhere wins
    ("", NO_CHOICE),
    ("[unk]", NO_CHOICE),
    ("[unk] [unk]", NO_CHOICE),
    ("喂 喂", NO_CHOICE),
])
def test_match(text: str, choice: str) -> None:
    assert TOY.match(text) == choice


def test_an_emergency_loses_only_to_a_longer_phrase_around_it() -> None:
    grammar = MenuGrammar("t", {"repair": ("水管 漏水", "不是 很急"),
                                "emergency": ("很急",), "flooding": ("漏水 很大",)})
    assert grammar.match("水管 漏水 很大") == "flooding"  # overlaps, not covered
    assert grammar.match("不是 很急 的 报修") == "repair"  # a negation around it
    assert grammar.match("很急 不是 开玩笑") == "emergency"


def test_unseen_transitions_count_steps_no_phrase_takes() -> None:
    assert TOY.unseen_transitions("我 要 报修") == (0, 4)
    assert TOY.unseen_transitions("[unk] 我 要 报修 [unk]") == (0, 4)
    assert TOY.unseen_transitions("我 要 报修 了") == (1, 5)  # 报修 -> 了 (着火 了 ends in 了)
    assert TOY.unseen_transitions("了 投诉 水管 着火") == (4, 5)  # only 着火 -> end is seen
    assert TOY.unseen_transitions("") == (1, 1)


def test_strung_together_words_are_not_understood() -> None:
    recognizer = MenuRecognizer(allow_network=False)  # no model needed to judge words
    grammar = recognizer.grammars["main"]

    def judged(text: str, conf: float = 0.9) -> str:
        return recognizer._first_opinion(grammar, Heard.of(text, conf))

    with recognizer:
        assert judged("我 要 报修") == "repair"
        assert judged("喂 再说 一遍") == "repeat"  # a word before a phrase
        assert judged("想 听 个 起 问问 的 想") == NO_CHOICE  # back-off salad
        assert judged("我 要 报修", conf=0.3) == NO_CHOICE  # below min_confidence
        assert judged("[unk]") == NO_CHOICE
        recognizer.max_unseen_share = None
        assert judged("想 听 个 起 问问 的 想") == "consultation"


def test_find_names_the_phrase_that_decided() -> None:
    assert TOY.find("喂 我 要 报修 谢谢") == PhraseMatch("repair", "我要报修")
    assert TOY.find("水管 漏水 很大") == PhraseMatch("flooding", "漏水很大")
    assert TOY.find("喂 喂") is None
    assert TOY.is_phrase("我 要 报修") and not TOY.is_phrase("喂 我 要 报修")


def test_support_counts_the_characters_that_name_a_choice() -> None:
    grammar = load_grammar("main")
    assert grammar.support("我要投诉", "我 要 投诉") == 1.0
    # 我 and 要 come with most choices: they weigh little
    assert grammar.support("我要投诉", "我 要 走 了") < RULE.min_support
    homophone = grammar.support("我要报修", "我 要 保修")  # the free decode's spelling
    assert RULE.min_support <= homophone < 1.0
    assert grammar.support("问问", "想听 歌曲 稳稳 的 幸福") == 0.0


# -- the second opinion: the free decode confirms the grammar decode (pure) -------------

MAIN = load_grammar("main")
RULE = SecondOpinion()


def second_opinion(heard: str, free: str, free_conf: float = 0.95, heard_conf: float = 0.9
                   ) -> str:
    recognizer_verdict = MAIN.match(heard)  # what the grammar decode's checks let through
    return RULE.decide(MAIN, recognizer_verdict, Heard.of(heard, heard_conf),
                       Heard.of(free, free_conf))


def test_a_free_transcript_that_names_the_same_choice_confirms() -> None:
    assert second_opinion("喂 我 要 投诉 你们", "喂 我 要 投诉 你们 物业") == "complaint"


def test_a_free_transcript_that_shares_the_phrase_confirms() -> None:
    # the free decode spells it 保修 (no phrase), but 修 is the phrase's own character
    assert second_opinion("喂 我 要 报修 了", "喂 我 要 保修 了") == "repair"


def test_a_confident_free_transcript_of_other_words_overrules() -> None:
    # out-of-grammar speech strung from grammar words by the back-off
    assert second_opinion("想 听 个 问问 的", "想听 歌曲 稳稳 的 幸福") == NO_CHOICE
    assert second_opinion("跟 想 返回 来", "我 刚 下班 回来") == "back"  # shares 回: kept


def test_an_unsure_free_transcript_cannot_overrule() -> None:
    assert second_opinion("想 听 个 问问 的", "想听 歌曲 稳稳 的 幸福", free_conf=0.5) == (
        "consultation")


def test_a_whole_phrase_heard_clearly_needs_no_second_opinion() -> None:
    heard = Heard.of("我 要 投诉", 0.9)
    assert RULE.settled(MAIN, "complaint", heard)
    assert RULE.decide(MAIN, "complaint", heard, Heard.of("我 要 走 了")) == "complaint"
    assert not RULE.settled(MAIN, "complaint", Heard.of("我 要 投诉", 0.5))  # unsure words
    assert not RULE.settled(MAIN, "complaint", Heard(("我", "要", "投诉", "[unk]"),
                                                     (0.9, 0.9, 0.9, 0.9)))


def test_an_emergency_is_never_overruled() -> None:
    assert RULE.settled(MAIN, "fire", Heard.of("好 的 冒烟 了 吧"))
    assert second_opinion("好 的 冒烟 了 吧", "好 的 谢谢 你 啊") == "fire"


def test_nothing_heard_is_settled_as_none() -> None:
    unknown = Heard(("[unk]",), (1.0,))
    assert RULE.settled(MAIN, NO_CHOICE, unknown)
    assert RULE.decide(MAIN, NO_CHOICE, unknown, Heard.of("我 要 投诉")) == NO_CHOICE


def test_a_choice_the_grammar_decode_strung_among_other_words_is_rescued() -> None:
    # the back-off check turned the grammar decode down; the free decode names the
    # choice, and the grammar decode did hear its phrase
    salad = Heard.of("你 好 我 要 投诉 刚才 我 起 太 出 一级 楼")
    free = Heard.of("你好 我 要 投诉 楼上 一大早 就 在 打 电钻")
    assert RULE.decide(MAIN, NO_CHOICE, salad, free) == "complaint"
    unrelated = Heard.of("你 好 我 要 派 个 师傅")
    assert RULE.decide(MAIN, NO_CHOICE, unrelated, free) == NO_CHOICE


def test_emergency_word_in_a_longer_ordinary_phrase_is_still_safe() -> None:
    # shipped grammar: "not urgent" is an ordinary repair, "urgent" an emergency
    assert match_choice("不 是 很 急", "repair") == "repair"
    assert match_choice("很 急", "repair") == EMERGENCY
    assert match_choice("水管 爆 了", "main") == "flooding"


# -- checking grammar files -------------------------------------------------------------


@pytest.mark.parametrize(("data", "problem"), [
    (["报修", "[unk]"], "expected an object"),
    ({"phrases": {}}, "expected an object"),
    ({"choices": {"repair": []}}, "non-empty list"),
    ({"choices": {"repair": ["报修", 3]}}, "unusable phrases"),
    ({"choices": {"repair": ["报修", "[unk]"]}}, "unusable phrases"),
    ({"choices": {"repair": ["报 修"], "agent": ["报修"]}}, "in both 'repair' and 'agent'"),
])
def test_malformed_grammar_is_refused(data: Any, problem: str) -> None:
    with pytest.raises(GrammarError, match=problem):
        grammar_from_dict("main", data)


def test_grammar_must_match_the_menu_file() -> None:
    menu = default_menu()
    assert set(declared_choices("repair", menu)) >= {EMERGENCY, "back", *EMERGENCIES}
    partial = {c: ("报修",) if c == "repair" else (f"{c} x",) for c in ("repair", "agent")}
    with pytest.raises(GrammarError, match=r"no phrases for \[.*'complaint'"):
        check_against_menu(MenuGrammar("main", partial), menu)
    extra = {c: (c,) for c in declared_choices("main", menu)} | {"survey": ("评价",)}
    with pytest.raises(GrammarError, match=r"does not declare: \['survey'\]"):
        check_against_menu(MenuGrammar("main", extra), menu)
    with pytest.raises(GrammarError, match="no menu of the menu file uses"):
        declared_choices("nope", menu)


def test_grammar_file_errors_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "main.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GrammarError, match="cannot read"):
        load_grammar("main", tmp_path)
    with pytest.raises(GrammarError, match="no file"):
        load_grammar("repair", tmp_path)
    with pytest.raises(GrammarError, match="not a grammar name"):
        load_grammar("../etc/passwd", tmp_path)


# -- phrase families ------------------------------------------------------------------


def test_expand_template() -> None:
    slots = {"lead": ["", "我要"], "tail": ["", "一下"]}
    assert expand_template("{lead} (报修|维修) {tail}", slots) == [
        "报修", "报修一下", "维修", "维修一下",
        "我要报修", "我要报修一下", "我要维修", "我要维修一下"]
    assert expand_template("着火 (了|)", {}) == ["着火了", "着火"]
    with pytest.raises(GrammarError, match="unknown slot"):
        expand_template("{who} 报修", slots)
    with pytest.raises(GrammarError, match="cannot read"):
        expand_template("(报修|维修 一下", slots)


def test_a_phrase_stays_with_the_choice_of_higher_precedence() -> None:
    families = {"choices": {"a": ["(紧急|报修)"], "b": ["报修"]},
                "menus": {"m": {"choices": ["a", "b"], "extra": {"b": ["维修"]}}}}
    assert family_phrases(families, "m") == {"a": ["紧急", "报修"], "b": ["维修"]}


def test_segment_uses_the_fewest_words() -> None:
    vocabulary = {"我", "要", "我要", "报", "修", "报修", "一下"}
    assert segment("我要报修一下", vocabulary) == ["我要", "报修", "一下"]
    with pytest.raises(GrammarError, match="cannot be spelt"):
        segment("我要报修吧", vocabulary)


# -- audio input errors (before any model is needed) ----------------------------------


def test_corrupt_or_unusable_wav_gives_a_clear_error(tmp_path: Path) -> None:
    recognizer = MenuRecognizer(allow_network=False)  # the model loads on first decode
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all", encoding="utf-8")
    low = tmp_path / "low.wav"
    write_wav(low, np.zeros(4000, dtype=np.int16), 4000)
    with recognizer:
        with pytest.raises(AudioError, match=r"truncated\.wav: corrupt WAV header"):
            recognizer.recognize_file(truncated, "main")
        with pytest.raises(AudioError, match="not a WAV file"):
            recognizer.recognize_file(text, "main")
        with pytest.raises(AudioError, match="4000 Hz is too low"):
            recognizer.recognize_file(low, "main")
        with pytest.raises(KeyError, match="unknown grammar 'nope'"):
            recognizer.recognize_file(truncated, "nope")


# -- with the Vosk model ----------------------------------------------------------------


def clip_labels() -> dict[str, str]:
    """id -> intent of the shared clips (the text column is not read)."""
    labels = CLIPS / "labels.tsv"
    if not labels.is_file():
        pytest.skip(f"shared IVR clips missing: {CLIPS}")
    with labels.open(encoding="utf-8", newline="") as fh:
        return {row[0]: row[2] for row in csv.reader(fh, delimiter="\t") if len(row) >= 3}


def some_clips(per_intent: int = 1) -> list[tuple[Path, str]]:
    """The first clip of each labelled intent."""
    seen: dict[str, int] = {}
    picked = []
    for clip, intent in clip_labels().items():
        if seen.get(intent, 0) < per_intent:
            seen[intent] = seen.get(intent, 0) + 1
            picked.append((CLIPS / f"{clip}.wav", intent))
    return picked


@pytest.fixture(scope="module")
def recognizer() -> Any:
    recognizer = MenuRecognizer(allow_network=False)
    try:
        recognizer.model_path  # noqa: B018 (loads it)
    except ModelNotFound as exc:
        pytest.skip(f"no Vosk model: {exc}")
    yield recognizer
    recognizer.close()


@pytest.mark.asr
def test_every_grammar_word_is_in_the_model_and_files_are_current(
    recognizer: MenuRecognizer,
) -> None:
    vocabulary = model_vocabulary(recognizer.model_path)
    assert len(vocabulary) > 50_000 and "报修" in vocabulary
    for grammar in recognizer.grammars.values():
        assert sorted(grammar.words() - vocabulary) == []
    built = build_all(default_menu(), vocabulary)
    for name, text in built.items():
        assert (PROJECT_ROOT / "grammars" / f"{name}.json").read_text(encoding="utf-8") == text


@pytest.mark.asr
def test_clips_recognised_end_to_end(recognizer: MenuRecognizer) -> None:
    clips = some_clips()
    assert len(clips) >= 5
    results = [recognizer.recognize_file(path, "main") for path, _ in clips]
    choices = {*recognizer.grammars["main"].choices, NO_CHOICE}
    for (_, intent), heard in zip(clips, results, strict=True):
        assert isinstance(heard, Recognition)
        assert heard.choice in choices
        assert 0.0 <= heard.confidence <= 1.0
        assert heard.decode_ms > 0 and heard.audio_ms > 1000
        if intent != NO_CHOICE:
            assert heard.text and heard.confidence >= recognizer.min_confidence
    right = sum(heard.choice == intent for (_, intent), heard in zip(clips, results, strict=True))
    assert right >= len(clips) - 1  # the benchmark measures accuracy; here the path works


@pytest.mark.asr
def test_16k_and_other_rates_are_resampled(recognizer: MenuRecognizer, tmp_path: Path) -> None:
    path, _ = some_clips()[0]
    samples, rate = read_mono(path)
    at_8k = recognizer.recognize_file(path, "main")
    for other in (16000, 11025):
        resampled = tmp_path / f"{other}.wav"
        write_wav(resampled, resample(samples, rate, other), other)
        heard = recognizer.recognize_file(resampled, "main")
        assert heard.choice == at_8k.choice
        assert abs(heard.audio_ms - at_8k.audio_ms) < 5


@pytest.mark.asr
def test_silence_and_noise_are_none(recognizer: MenuRecognizer) -> None:
    rng = np.random.default_rng(3)
    for samples in (np.zeros(16000, dtype=np.int16), rng.normal(0, 30, 16000).astype(np.int16)):
        heard = recognizer.recognize_samples(samples, 8000, "repair")
        assert heard.choice == NO_CHOICE


@pytest.mark.asr
async def test_decodes_do_not_block_the_event_loop(
    recognizer: MenuRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each decode, once done, waits for the event loop to tick: were a decode run
    on the loop, the loop could never tick and the wait would fail."""
    loop_ran = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    decode = recognizer._decode

    def gated(key: str | None, audio: Any, stop: threading.Event | None) -> Heard | None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            heard = decode(key, audio, stop)
            assert loop_ran.wait(120), "the event loop did not run during a decode"
            return heard
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(recognizer, "_decode", gated)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            if ticks == 20:
                loop_ran.set()
            await asyncio.sleep(0.001)

    clock = asyncio.create_task(ticker())
    paths = [path for path, _ in some_clips()][:4]
    results = await asyncio.gather(*(recognizer.recognize_choice("main", p) for p in paths))
    done.set()
    await clock
    assert len(results) == 4 and ticks >= 20
    assert running[1] <= 2  # the pool's bound (default workers)


@pytest.mark.asr
def test_cli_prints_one_json_object_per_file(tmp_path: Path) -> None:
    clips = [path for path, _ in some_clips()][:2]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(clips[0].read_bytes()[:30])
    env = {**os.environ, "CALLCENTER_DATA_DIR": str(tmp_path), "CALLCENTER_LOG_LEVEL": "WARNING"}
    proc = subprocess.run(
        [sys.executable, "-m", "callcenter", "ivr", "recognize", "--menu", "main",
         clips[0], corrupt, clips[1]],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["file"] for e in entries] == [str(clips[0]), str(corrupt), str(clips[1])]
    assert "corrupt WAV header" in entries[1]["error"]
    for entry in (entries[0], entries[2]):
        assert set(entry) == {"file", "choice", "confidence", "text", "free_text", "decode_ms",
                              "audio_ms"}
        assert entry["choice"] in {*load_grammar("main").choices, NO_CHOICE}

    unknown = subprocess.run(
        [sys.executable, "-m", "callcenter", "ivr", "recognize", "--menu", "nope", clips[0]],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert unknown.returncode == 2
    assert "unknown menu 'nope'" in unknown.stderr


def test_a_safety_emergency_named_anywhere_wins_over_a_longer_phrase() -> None:
    from callcenter.ivr.grammars import match_choice

    assert match_choice("厨房 着火 了 我 要 报修") == "fire"
    assert match_choice("厨房着火了我要报修", "repair") == "fire"
    assert match_choice("我 要 报修") == "repair"


# -- the second opinion on real audio --------------------------------------------------


def espeak_or_skip() -> EspeakEngine:
    """espeak-ng on PATH, else in a built sandbox root (chroot needs root)."""
    if shutil.which("espeak-ng"):
        return EspeakEngine()
    root = AsteriskSandbox(cache_dir=get_settings().cache_dir).root
    if (root / "usr/bin/espeak-ng").is_file() and os.geteuid() == 0:
        return EspeakEngine(sandbox_root=root)
    pytest.skip("espeak-ng: not on PATH, and no sandbox root to chroot into")


def real_speech_piece(clip: str, start_s: float, length_s: float) -> tuple[np.ndarray, int]:
    path = REAL_SPEECH / f"{clip}.wav"
    if not path.is_file():
        pytest.skip(f"shared real speech missing: {path}")
    samples, rate = read_mono(path)
    return samples[int(start_s * rate): int((start_s + length_s) * rate)], rate


@pytest.mark.asr
def test_out_of_grammar_speech_the_grammar_decode_takes_for_a_choice_is_rejected(
    recognizer: MenuRecognizer,
) -> None:
    # a news reader (在局部地区小范围...): with the grammar alone it comes out as a
    # string of grammar words ending in a phrase of a menu (which phrase, and whether
    # it is main's, varies with what the process decoded before: Vosk's adaptation)
    samples, rate = real_speech_piece("BAC009S0150W0201", 0.8, 2.0)
    grammar_only = MenuRecognizer(allow_network=False, second_opinion=None,
                                  model_path=recognizer.model_path, workers=1)
    with grammar_only:
        forced = grammar_only.recognize_samples(samples, rate, "main")
    assert forced.text and "局部" not in normalise(forced.text)
    heard = recognizer.recognize_samples(samples, rate, "main")
    assert heard.choice == NO_CHOICE
    assert heard.free_text and "局部" in normalise(heard.free_text)


@pytest.mark.asr
def test_a_menu_choice_with_words_around_it_is_confirmed_and_accepted(
    recognizer: MenuRecognizer, tmp_path: Path
) -> None:
    engine = espeak_or_skip()
    wav = tmp_path / "choice.wav"
    engine.render("需要师傅上门修理", wav)  # not one whole phrase: the free decode runs
    heard = recognizer.recognize_file(wav, "main")
    assert heard.choice == "repair"
    assert heard.free_text is not None
