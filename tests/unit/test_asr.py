"""Vosk transcription of real scenario legs (loads the model: marked ``asr``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callcenter.asr.decoder import Transcriber
from callcenter.asr.model import ModelNotFound
from callcenter.audio import read_mono, write_wav
from callcenter.settings import SHARED_DIR

pytestmark = pytest.mark.asr

LEG = SHARED_DIR / "scenarios" / "dev" / "d007" / "agent.wav"


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    try:
        return Transcriber(allow_network=False)
    except ModelNotFound as exc:
        pytest.skip(f"no Vosk model: {exc}")


def test_agent_leg_words_and_times(transcriber: Transcriber) -> None:
    if not LEG.is_file():
        pytest.skip("shared scenarios not available")
    samples, rate = read_mono(LEG)
    length = len(samples) / rate
    segments = transcriber.transcribe_file(LEG, "agent")
    assert len(segments) >= 5
    text = "".join(s.text for s in segments)
    for expected in ("您好", "客服", "请问", "卫生间", "马桶", "单元", "师傅"):
        assert expected in text
    assert " " not in text
    previous_end = 0.0
    for s in segments:
        assert s.leg == "agent"
        assert s.text == "".join(w.w for w in s.words)
        assert 0.0 <= s.start <= s.end <= length
        assert s.start >= previous_end - 1e-6  # utterances do not overlap within a leg
        previous_end = s.end
        for w in s.words:
            assert s.start <= w.start <= w.end <= s.end
            assert 0.0 <= w.conf <= 1.0
    # the greeting is at the start of the call (ground truth: 0.5-6.0 s)
    assert segments[0].text.startswith("您好")
    assert 0.3 <= segments[0].start <= 1.5
    assert 5.0 <= segments[0].end <= 6.5


def test_silence_yields_no_segments(transcriber: Transcriber, tmp_path: Path) -> None:
    rate = 8000
    rng = np.random.default_rng(7)
    path = tmp_path / "silent.wav"
    write_wav(path, rng.normal(0, 3, 10 * rate).astype(np.int16), rate)  # line-noise floor
    assert transcriber.transcribe_file(path, "caller") == []
    assert transcriber.transcribe(np.zeros(5 * rate, dtype=np.int16), rate, "agent") == []
    assert transcriber.transcribe(np.zeros(0, dtype=np.int16), rate, "agent") == []


def test_vad_mode_and_16k_feed_agree_on_times(transcriber: Transcriber) -> None:
    if not LEG.is_file():
        pytest.skip("shared scenarios not available")
    samples, rate = read_mono(LEG)
    vad = Transcriber(transcriber.model_path, use_vad=True)
    up = Transcriber(transcriber.model_path, feed_rate=16000)
    for tr in (vad, up):
        segments = tr.transcribe(samples, rate, "agent")
        assert "卫生间" in "".join(s.text for s in segments)
        # "家里还有别的卫生间吗" is at 14.4-16.3 s in the ground truth
        hit = [w for s in segments for w in s.words if w.w == "卫生间"]
        assert hit and 14.0 <= hit[0].start <= 16.5


def test_one_recognizer_serves_leg_after_leg_with_times_from_each_legs_start() -> None:
    """Reused (reset) between legs: Vosk's clock runs on across them, the segments'
    times must not."""
    if not LEG.is_file():
        pytest.skip("shared scenarios not available")
    try:
        reused = Transcriber(allow_network=False)
    except ModelNotFound as exc:
        pytest.skip(f"no Vosk model: {exc}")
    samples, rate = read_mono(LEG)
    first = reused.transcribe(samples[: rate * 15], rate, "agent")
    reused.transcribe(samples[rate * 15: rate * 30], rate, "agent")
    again = reused.transcribe(samples[: rate * 15], rate, "agent")
    assert reused.built == 1
    # The same words at the same times, whatever was decoded before (no dither:
    # asr/search.py).
    assert first and again == first


def test_skipping_silence_keeps_times_from_the_legs_start() -> None:
    if not LEG.is_file():
        pytest.skip("shared scenarios not available")
    try:
        skipping = Transcriber(allow_network=False, use_vad=True)
    except ModelNotFound as exc:
        pytest.skip(f"no Vosk model: {exc}")
    samples, rate = read_mono(LEG)
    segments = skipping.transcribe(samples[: rate * 40], rate, "agent")
    assert segments[0].text.startswith("您好")
    assert 0.3 <= segments[0].start <= 1.5  # ground truth: 0.5-6.0 s
    later = [s for s in segments if s.start > 10]
    assert later and 13.5 <= later[0].start <= 15.5  # the agent's next turn: 14.4 s
    # No word reaches back over the silence skipped before its stretch.
    assert all(w.end - w.start < 2.0 for s in segments for w in s.words)


def test_the_narrow_search_and_the_models_own_hear_the_same_words(
    transcriber: Transcriber, tmp_path: Path
) -> None:
    """The default search (asr/search.py) decodes through its own model folder;
    ``asr_search="model"`` decodes with the model's conf as shipped."""
    from callcenter.settings import Settings

    if not LEG.is_file():
        pytest.skip("shared scenarios not available")
    own = Transcriber(transcriber.model_path,
                      settings=Settings(asr_search="model", cache_dir=tmp_path))
    assert transcriber.search is not None and own.search is None
    # The model's search as shipped; only its dither is turned off.
    (folder,) = (tmp_path / "model-searches").iterdir()
    shipped = transcriber.model_path / "conf"
    assert (folder / "conf" / "model.conf").read_text() == (shipped / "model.conf").read_text()
    assert "--dither=0" in (folder / "conf" / "mfcc.conf").read_text()
    samples, rate = read_mono(LEG)
    for tr in (transcriber, own):
        text = "".join(s.text for s in tr.transcribe(samples[: rate * 40], rate, "agent"))
        for expected in ("您好", "客服", "卫生间", "单元"):
            assert expected in text


def test_building_names_are_spelt_in_the_models_words_for_the_address_pass(
    transcriber: Transcriber,
) -> None:
    """The estate's building names join the address grammar as phrases of the
    model's words; a name it has no words for is left to the first pass."""
    from callcenter.pipeline import building_cues, spelt_building_name

    spelt = spelt_building_name("商业街", transcriber.model_path)
    assert spelt and spelt.replace(" ", "") == "商业街"
    assert spelt_building_name("龘靐", transcriber.model_path) is None
    # Its numbers as they are said: the model has no word "3".
    numbered = spelt_building_name("商业街3栋", transcriber.model_path)
    assert numbered and numbered.replace(" ", "") == "商业街三栋"
    cues = building_cues(["商业街", "龘靐"], transcriber.model_path)
    assert cues.building_names == (spelt,) and "单元" in cues.address_words
    if not LEG.is_file():
        pytest.skip("shared scenarios not available")
    samples, rate = read_mono(LEG)
    first = transcriber.transcribe(samples, rate, "agent")
    # Vosk takes the grammar with the names: the address the agent reads back is heard.
    heard = transcriber.addresses(samples, rate, "agent", first, cues)
    assert "单元" in "".join(s.text for s in heard)


def test_the_name_pass_decodes_the_callers_answer_with_the_surname_grammar(
    transcriber: Transcriber,
) -> None:
    """The agent asks 您贵姓 about 37 s in; the caller's answer is decoded again with
    a grammar of name words and surnames: only those words come out."""
    from callcenter.asr.numbers import NAME_WORDS, UNKNOWN_WORD
    from callcenter.dialogue import build_timeline
    from callcenter.pipeline import number_cues

    caller_leg = LEG.with_name("caller.wav")
    if not caller_leg.is_file():
        pytest.skip("shared scenarios not available")
    legs = {leg: read_mono(LEG.with_name(f"{leg}.wav")) for leg in ("caller", "agent")}
    cut = {leg: (x[: r * 50], r) for leg, (x, r) in legs.items()}
    first = build_timeline(*(transcriber.transcribe(x, r, leg) for leg, (x, r) in
                             (("caller", cut["caller"]), ("agent", cut["agent"]))), 50.0)
    cues = number_cues()
    asked = [s for s in first.segments if s.leg == "agent"
             and any(q in s.text for q in cues.name_questions)]
    assert asked, [s.text for s in first.segments if s.leg == "agent"]
    samples, rate = cut["caller"]
    heard = transcriber.names(samples, rate, "caller", first.segments, cues)
    assert heard
    allowed = {*NAME_WORDS, *cues.surnames, UNKNOWN_WORD}
    for segment in heard:
        assert {w.w for w in segment.words} <= allowed


def test_a_cache_it_cannot_write_leaves_the_models_own_search(
    transcriber: Transcriber, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The narrower search needs a folder in the cache; without one the calls are
    still transcribed, with the model's own search."""
    from callcenter.settings import Settings

    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    fallback = Transcriber(transcriber.model_path,
                           settings=Settings(asr_search="narrow", cache_dir=not_a_folder))
    assert fallback.search is None
    assert "the model's folder as shipped" in caplog.text
    assert fallback.transcribe(np.zeros(8000, dtype=np.int16), 8000, "agent") == []


def test_grammar_phrases_the_model_has_no_words_for_are_left_out(
    transcriber: Transcriber, caplog: pytest.LogCaptureFixture
) -> None:
    """Vosk would drop them itself, warning on its console once for each and each
    time a recognizer is built; they are left out before, and named once in the log.
    A phrase of several of the model's words is spelt in them."""
    import json
    import logging

    from callcenter.asr.model import cached_vocabulary
    from callcenter.pipeline import number_cues

    vocabulary = cached_vocabulary(transcriber.model_path)
    surnames = number_cues().surnames
    unheard = [s for s in surnames if len(s) == 1 and s not in vocabulary]  # no spelling
    assert unheard, "the surname list is expected to hold a surname the model lacks"
    assert "免贵" not in vocabulary and {"免", "贵"} <= vocabulary
    grammar = json.dumps(["我 姓", "免贵", *unheard, "[unk]"], ensure_ascii=False)
    with caplog.at_level(logging.INFO, logger="callcenter.asr.decoder"):
        kept = json.loads(transcriber._heard(grammar))
    assert kept == ["我 姓", "免 贵", "[unk]"]
    assert unheard[0] in caplog.text


def test_a_surname_the_model_lacks_is_heard_through_a_word_that_sounds_the_same() -> None:
    """倪 (ni2) is listened for as the first word of the model's that is said ni2, and
    written back as 倪; 覃 is said qin2 like 秦, which the model hears, and 晏 like
    彦: which of the two was said cannot be told, so neither gets a stand-in."""
    from callcenter.asr.numbers import surname_stand_ins, with_surnames
    from callcenter.core import Segment, Word

    vocabulary = {"泥", "尼", "秦", "宴", "雁", "我", "姓", "王", "倪萍"}
    stand_ins = surname_stand_ins(["王", "倪", "覃", "秦", "晏", "彦"], vocabulary,
                                  ["覃 qin2"])
    assert stand_ins == {"尼": "倪"}
    heard = [Segment("caller", 1.0, 2.0, "我姓尼", [Word("我", 1.0, 1.2), Word("姓", 1.2, 1.5),
                                                  Word("尼", 1.5, 2.0, 0.8)])]
    [written] = with_surnames(heard, stand_ins)
    assert written.text == "我姓倪"
    assert [(w.w, w.start, w.conf) for w in written.words][-1] == ("倪", 1.5, 0.8)


def test_a_leg_is_resampled_once_for_all_its_passes(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass and the second passes of one leg are fed the same upsampled
    signal, resampled once; another leg is resampled for itself."""
    import callcenter.asr.decoder as decoder

    calls: list[int] = []
    real = decoder.resample

    def counted(x: np.ndarray, src: int, dst: int) -> np.ndarray:
        calls.append(len(x))
        return real(x, src, dst)

    monkeypatch.setattr(decoder, "resample", counted)
    rate = 8000
    leg = np.zeros(2 * rate, dtype=np.int16)
    other = np.zeros(3 * rate, dtype=np.int16)
    transcriber.transcribe(leg, rate, "caller")
    transcriber.transcribe(other, rate, "agent")
    transcriber.transcribe(leg, rate, "caller")
    transcriber.transcribe(other, rate, "agent")
    assert calls == [len(leg), len(other)]
