"""Build two small classification sets of other kinds than sentiment from the PyPI package ``chatterbot-corpus``
(1.3.3, BSD licence; its YAML dialog files, no code): ``data/icl/langid`` (8 languages written in Latin script)
and ``data/icl/chatter_topics`` (English dialog lines by the corpus's topic file). Used by issue 26's evaluation.

    pip download --no-deps chatterbot-corpus==1.3.3 -d /tmp/cbc && unzip -q -o /tmp/cbc/*.whl -d /tmp/cbc/x
    .venv/bin/python scripts/data/chatterbot_icl.py /tmp/cbc/x/chatterbot_corpus/data
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import yaml

LANGUAGES = ("english", "french", "german", "spanish", "italian", "portuguese", "dutch", "indonesian")
TOPICS = ("ai", "computers", "emotion", "humor", "literature", "money", "movies", "psychology", "science", "sports")
TEST_PER_LABEL, TRAIN_PER_LABEL, SEED = 25, 150, 0


def lines(files: list[Path]) -> list[str]:
    """Every distinct dialog line of the YAML files, 10 to 300 characters, in file order."""
    out: dict[str, None] = {}
    for f in files:
        for conversation in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations") or []:
            for line in conversation:
                if isinstance(line, str) and 10 <= len(line.strip()) <= 300:
                    out.setdefault(" ".join(line.split()), None)
    return list(out)


def write(folder: Path, by_label: dict[str, list[str]]) -> None:
    """Per label: TEST_PER_LABEL lines to test.jsonl, up to TRAIN_PER_LABEL others to train.jsonl (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for label, texts in by_label.items():
        texts = texts[:]
        random.Random(SEED).shuffle(texts)
        test += [(t, label) for t in texts[:TEST_PER_LABEL]]
        train += [(t, label) for t in texts[TEST_PER_LABEL:TEST_PER_LABEL + TRAIN_PER_LABEL]]
    for name, rows in (("train", train), ("test", test)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for text, label in rows:
                f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
        print(folder / f"{name}.jsonl", len(rows))


def main(data: Path, out: Path = Path("data/icl")) -> None:
    write(out / "langid", {lang: lines(sorted((data / lang).glob("*.yml"))) for lang in LANGUAGES})
    write(out / "chatter_topics", {t: lines([data / "english" / f"{t}.yml"]) for t in TOPICS})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
