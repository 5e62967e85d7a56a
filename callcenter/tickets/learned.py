"""Statistical judgements learned from the project's own corpus: category, base
urgency, complaint severity and VIP from character n-grams with a linear model.

Character n-grams need no word segmentation and bear recogniser mistakes well
(one wrong character spoils one or two n-grams, not the whole word). Beside them
the models read how the words sound: syllable n-grams of toneless pinyin with the
sounds many callers (and the recogniser) merge taken as one (zh/z, ch/c, sh/s,
-ng/-n), so 头诉 reads as 投诉 and 包安 as 保安. A linear model explains itself: the
n-grams that pushed a decision are listed with it.
The models are trained when first needed (about 60 s) and kept for the
life of the process and in the cache folder, so nothing trained is shipped as a
binary.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
import yaml
from pypinyin import lazy_pinyin
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from callcenter.settings import default_cache_dir
from callcenter.text import normalise
from callcenter.tickets import safety
from callcenter.tickets.corpus import CORPUS_DIR, Example, Split, load_corpus

FAMILIES_FILE = Path(__file__).with_name("families.yaml")
# The IVR key and each word family found become one private-use character after
# the text: features the model may weigh (callers press the wrong key; a family
# lights up for words the corpus never used), shown by name in the evidence.
_KEY_MARKS = {"1": "\ue001", "2": "\ue002", "3": "\ue003", "0": "\ue000"}
_FAMILY_BASE = 0xE100


@lru_cache(maxsize=1)
def families() -> dict[str, re.Pattern[str]]:
    with open(FAMILIES_FILE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return {str(name): re.compile(str(words)) for name, words in data.items()}


@lru_cache(maxsize=1)
def _mark_names() -> dict[str, str]:
    names = {v: f"key {k}" for k, v in _KEY_MARKS.items()}
    names.update({chr(_FAMILY_BASE + i): f"[{f}]" for i, f in enumerate(families())})
    return names


def document(text: str, key: str = "") -> str:
    """What the models read: the normalised words, then the key and family marks."""
    flat = normalise(text)
    marks = "".join(
        chr(_FAMILY_BASE + i) for i, p in enumerate(families().values()) if p.search(flat)
    )
    return f"{flat} {_KEY_MARKS.get(key.strip()[:1], '')}{marks}"


_HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Initials and finals that callers' accents and the recogniser confuse: one sound each.
_MERGED_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"))
_MERGED_FINALS = re.compile(r"(?<=[aei])ng$")


def _merged(syllable: str) -> str:
    for retroflex, flat in _MERGED_INITIALS:
        if syllable.startswith(retroflex):
            syllable = flat + syllable[len(retroflex):]
            break
    return _MERGED_FINALS.sub("n", syllable)


@cache  # bounded: one entry per Chinese character seen
def _syllable(char: str) -> str:
    return _merged(lazy_pinyin(char)[0])


def sounds(doc: str) -> str:
    """The Chinese characters of ``doc`` as the syllables they sound like, space-
    separated (toneless pinyin, confusable sounds merged): 投诉保安 -> "tou su bao an".
    Each character has one reading, its commonest: reading words would pick the
    right one for a polyphone, five times slower, and the models need the same
    reading every time more than the right one."""
    return " ".join(_syllable(c) for run in _HAN_RUN.findall(doc) for c in run)


_CHARS, _SOUNDS = "chars", "sounds"


def _readable(feature: str) -> str:
    view, _, ngram = feature.partition("__")
    if view == _SOUNDS:
        return f"sounds like {ngram}"
    names = _mark_names()
    return "".join(f"{names[c]} " if c in names else c for c in ngram).strip()


def _telling(feature: str) -> bool:
    """More than one character or syllable: a single one says little to a reader."""
    view, _, ngram = feature.partition("__")
    return len(ngram.split()) > 1 if view == _SOUNDS else len(ngram) > 1


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    probabilities: dict[str, float]
    features: tuple[str, ...]  # the n-grams that pushed most towards ``label``

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    @property
    def margin(self) -> float:
        """How far the winner is ahead of the runner-up."""
        ranked = sorted(self.probabilities.values(), reverse=True)
        return ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a model reads of one document: its characters and how it sounds."""

    chars: str
    sounds: str


def reading(doc: str) -> Reading:
    return Reading(doc, sounds(doc))


# Each view's TF-IDF rows are unit length; weighed by 1/sqrt(2) each, a row of both
# is too, which keeps the solver's step (and its iterations) as for one view.
_VIEW_WEIGHT = 0.5 ** 0.5


class TextModel:
    """TF-IDF character 1-3-grams and syllable 1-3-grams (``sounds``), and a logistic
    regression over one label."""

    def __init__(
        self, readings: Sequence[Reading], labels: Sequence[str], *, c: float = 32.0
    ) -> None:
        # An n-gram seen in one document only says nothing general (min_df=2), and
        # the saga solver fits these sparse features about five times faster than
        # lbfgs: training all eight takes about 60 s on two cores. C (the inverse of
        # regularisation): grouped CV over the corpus, 8, 16, 32, 64, 128 gave urgency
        # 93.2, 93.5, 93.8, 94.1, 93.9 %; with whole corpus files held out (other
        # topics, other writers) 16, 32, 64 gave 92.9, 93.1, 93.1 %, and 64 lost a
        # P1 there: 32 is the largest that loses none (recall first).
        self.chars = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                                     lowercase=False, min_df=2)
        self.sounds = TfidfVectorizer(analyzer="word", token_pattern=r"\S+",
                                      ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        matrix = self._joined(self.chars.fit_transform([r.chars for r in readings]),
                              self.sounds.fit_transform([r.sounds for r in readings]))
        self.classifier = LogisticRegression(
            C=c, max_iter=5000, class_weight="balanced", solver="saga", random_state=0
        )
        self.classifier.fit(matrix, list(labels))
        self.labels: list[str] = [str(x) for x in self.classifier.classes_]
        self.names = np.concatenate([
            [f"{_CHARS}__{n}" for n in self.chars.get_feature_names_out()],
            [f"{_SOUNDS}__{n}" for n in self.sounds.get_feature_names_out()],
        ])

    @staticmethod
    def _joined(chars: Any, voiced: Any) -> Any:
        return sparse.hstack([chars * _VIEW_WEIGHT, voiced * _VIEW_WEIGHT], format="csr")

    def predict(self, doc: str | Reading, *, top: int = 5) -> Prediction:
        """``doc``: a ``document``, or its ``reading`` when several models judge the
        same one (read once, the same sounds for each)."""
        read = doc if isinstance(doc, Reading) else reading(doc)
        row = self._joined(self.chars.transform([read.chars]),
                           self.sounds.transform([read.sounds]))
        probs = self.classifier.predict_proba(row)[0]
        best = int(np.argmax(probs))
        pairs = zip(self.labels, probs, strict=True)
        return Prediction(
            label=self.labels[best],
            probabilities={lbl: round(float(p), 4) for lbl, p in pairs},
            features=self._reasons(row, best, top),
        )

    def _reasons(self, row: object, label_index: int, top: int) -> tuple[str, ...]:
        coef = self.classifier.coef_
        # Binary models keep one row of weights, for the second class.
        weights = coef[0] * (1 if label_index == 1 else -1) if coef.shape[0] == 1 else coef[
            label_index
        ]
        indices, values = row.indices, row.data  # type: ignore[attr-defined]
        pairs = zip(indices, values, strict=True)
        pushes = sorted(
            ((float(v * weights[i]), str(self.names[i])) for i, v in pairs), reverse=True
        )
        # Single characters say little to a reader; show them only if nothing else.
        shown = [n for w, n in pushes if w > 0 and _telling(n)][:top]
        return tuple(_readable(n) for n in shown or [n for w, n in pushes if w > 0][:top])


@dataclass(frozen=True, slots=True)
class Models:
    category: TextModel
    urgency: TextModel
    severity: TextModel
    # From the agent's words of whole calls: agents restate and name the problem.
    agent_category: TextModel
    agent_urgency: TextModel
    agent_severity: TextModel
    # VIP (none / elderly / disabled) from the caller's words: elderly living alone,
    # disabled, said in more ways than a term list holds (classifier.detect_vip).
    vip: TextModel | None = None
    # Whether a danger the safety rules found is told as one now (DANGER_REAL) or
    # as past, over, someone else's or a topic: the words around each hit
    # (safety.danger_contexts), learned from the corpus calls they occur in.
    danger_context: TextModel | None = None


DANGER_REAL, DANGER_NOT_REAL = "real", "not"


def danger_examples(examples: Sequence[Example]) -> tuple[list[Reading], list[str]]:
    """Each P1-making hit's surroundings in the corpus, labelled by its call: a
    hit in a P1 call is real, one in any other call is not."""
    docs, labels = [], []
    for e in examples:
        for context in safety.danger_contexts(e.text):
            docs.append(reading(context))
            labels.append(DANGER_REAL if e.urgency == "P1" else DANGER_NOT_REAL)
    return docs, labels


def _danger_model(examples: Sequence[Example]) -> TextModel | None:
    docs, labels = danger_examples(examples)
    return TextModel(docs, labels) if len(set(labels)) == 2 else None


def danger_told_now(models: Models, contexts: Sequence[str]) -> Prediction | None:
    """The most real of the dangers' readings (any one told as happening makes the
    call P1); None without a context model or a danger."""
    if models.danger_context is None or not contexts:
        return None
    model = models.danger_context
    return max((model.predict(reading(c)) for c in contexts),
               key=lambda p: p.probabilities.get(DANGER_REAL, 0.0))


def agent_document(text: str) -> str:
    return normalise(text)


def blend(caller: Prediction, agent: Prediction, agent_weight: float) -> Prediction:
    """The caller's and the agent's predictions mixed; the evidence names both."""
    labels = caller.probabilities.keys() | agent.probabilities.keys()
    mixed = {
        lbl: round((1 - agent_weight) * caller.probabilities.get(lbl, 0.0)
                   + agent_weight * agent.probabilities.get(lbl, 0.0), 4)
        for lbl in labels
    }
    label = max(mixed, key=lambda lbl: mixed[lbl])
    features = (*caller.features[:3], *(f"agent {f}" for f in agent.features[:2]))
    return Prediction(label=label, probabilities=mixed, features=features)


def _model(
    read: dict[str, Reading], examples: Sequence[Example],
    label: Callable[[Example], str | None],
) -> TextModel:
    usable = [(read[e.id], lbl) for e in examples if (lbl := label(e))]
    return TextModel([r for r, _ in usable], [str(lbl) for _, lbl in usable])


def train(examples: Sequence[Example]) -> Models:
    complaints = [e for e in examples if e.category == "complaint"]
    calls = [e for e in examples if e.agent]
    complaint_calls = [e for e in complaints if e.agent]
    # Each document is read (its sounds looked up) once, for all the models that learn
    # from it: the lookup is plain Python and would hold the others up.
    said = {e.id: reading(document(e.text, e.key)) for e in examples}
    answered = {e.id: reading(agent_document("".join(e.agent))) for e in calls}
    jobs: dict[str, Callable[[], TextModel]] = {
        "category": lambda: _model(said, examples, lambda e: e.category),
        "urgency": lambda: _model(said, examples, lambda e: e.urgency),
        "severity": lambda: _model(said, complaints, lambda e: e.severity),
        "agent_category": lambda: _model(answered, calls, lambda e: e.category),
        "agent_urgency": lambda: _model(answered, calls, lambda e: e.urgency),
        "agent_severity": lambda: _model(answered, complaint_calls, lambda e: e.severity),
        "vip": lambda: _model(said, examples, lambda e: e.vip),
    }
    # The solver runs without the GIL: the models train side by side.
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        danger = pool.submit(_danger_model, examples)
        return Models(**{name: f.result() for name, f in futures.items()},
                      danger_context=danger.result())


def _cache_key(split: Split) -> str:
    """What the trained models depend on: the corpus, the word families, the safety
    rules (the danger contexts are their hits), this code and the library that fits
    them."""
    digest = hashlib.sha256(f"{split}|{sklearn.__version__}".encode())
    for path in [*sorted(CORPUS_DIR.glob("*.yaml")), FAMILIES_FILE, Path(__file__),
                 safety.SAFETY_FILE, Path(safety.__file__)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _cache_dir() -> Path:
    return default_cache_dir() / "ticket-models"


@lru_cache(maxsize=2)
def trained(split: Split = "all") -> Models:
    """Models trained on one split of the corpus (``all`` in production; ``train``
    when the validation split is being measured). Training takes minutes on two
    cores (scripts/setup.sh does it once), so the result is kept on disk under a
    key of everything it depends on; a cache that cannot be read or written only
    costs the training."""
    path = _cache_dir() / f"{_cache_key(split)}.joblib"
    try:
        models = joblib.load(path)
        if isinstance(models, Models):
            path.touch()  # in use: not stale
            return models
    except Exception:  # absent, stale or corrupt: train instead
        pass
    models = train(load_corpus(split))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        joblib.dump(models, partial)
        partial.replace(path)  # atomic: a reader never sees half a file
        _forget_stale(path.parent)
    except OSError:
        pass
    return models


def _forget_stale(folder: Path, max_age_s: float = 7 * 86400, keep: int = 6) -> None:
    """Models of an older corpus: those unused for a week, and all but the ``keep``
    used last (each is about 200 MB, and every change to the corpus or the rules
    makes another)."""
    cutoff = time.time() - max_age_s
    by_use = sorted(folder.glob("*.joblib"), key=_last_used, reverse=True)
    for rank, old in enumerate(by_use):
        if rank >= keep or _last_used(old) < cutoff:
            old.unlink(missing_ok=True)


def _last_used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed by another process meanwhile
        return 0.0
