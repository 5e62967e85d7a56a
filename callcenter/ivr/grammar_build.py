"""Write ``grammars/<menu>.json`` from the phrase families (``grammars/families.yaml``).

    .venv/bin/python -m callcenter.ivr.grammar_build [--check]

Each phrase is split into the fewest words of the Vosk model's vocabulary (Vosk
ignores a grammar word it does not know, so a phrase written with one would
silently lose it). ``--check`` writes nothing and exits 1 when a file differs.
Needs the model (``callcenter.asr.model.resolve_model``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from callcenter.ivr.grammars import (
    FAMILIES_PATH,
    GRAMMARS_DIR,
    family_phrases,
    grammar_from_dict,
    grammar_names,
    load_families,
    segment,
)
from callcenter.ivr.menu import Menu, default_menu


def build_grammar(families: dict[str, Any], name: str, vocabulary: frozenset[str]
                  ) -> dict[str, Any]:
    """The JSON document of one grammar."""
    choices = {
        choice: [" ".join(segment(p, vocabulary)) for p in phrases]
        for choice, phrases in family_phrases(families, name).items()
    }
    doc = {"choices": choices}
    grammar_from_dict(name, doc)  # the same checks as at load time
    return doc


def render(doc: dict[str, Any]) -> str:
    """One phrase per line: diffs of the generated files stay readable."""
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def build_all(menu: Menu, vocabulary: frozenset[str], families_path: Path = FAMILIES_PATH
              ) -> dict[str, str]:
    families = load_families(families_path)
    return {name: render(build_grammar(families, name, vocabulary))
            for name in grammar_names(menu)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument("--out", type=Path, default=GRAMMARS_DIR)
    args = parser.parse_args(argv)

    from callcenter.asr.model import model_vocabulary, resolve_model

    vocabulary = model_vocabulary(resolve_model(allow_network=False))
    stale = []
    for name, text in build_all(default_menu(), vocabulary).items():
        path = args.out / f"{name}.json"
        if args.check:
            current = path.read_text(encoding="utf-8") if path.is_file() else ""
            stale += [str(path)] if current != text else []
            continue
        path.write_text(text, encoding="utf-8")
        count = sum(len(p) for p in json.loads(text)["choices"].values())
        print(f"wrote {path}: {count} phrases")
    if stale:
        print("out of date (run without --check): " + ", ".join(stale), file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
