"""The Classify tab's handlers: demonstrations into memory, then texts classified with memory and in context only."""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from longmem_core import DocumentError, LongMemModel, icl, read_labelled

from ..session import Demonstrations, Session
from .common import ASSETS, AppError, busy, check_bank_settings, check_file_size, check_question, named, retrieval_width

DEMONSTRATION_SETS = {  # label -> (demonstrations, task for the template, matching labelled test file)
    "SST-2 movie reviews (300; positive / negative)": ("icl/sst2_demonstrations.jsonl", "sst2", "icl/sst2_test.jsonl"),
    "Subj sentences (300; subjective / objective)": ("icl/subj_demonstrations.jsonl", "subj", "icl/subj_test.jsonl"),
}
UPLOADED_SET = "My uploaded file"
TEMPLATES = {"Review: … Sentiment: … (sentiment)": icl.SENTIMENT_TEMPLATE,
             "Input: … Type: … (subjectivity)": icl.SUBJ_TEMPLATE}


@dataclass
class DemonstrationSet:
    name: str
    key: str  # identifies the set's content and template
    template: str
    examples: list[tuple[str, str]]
    test_file: Path | None = None  # the bundled labelled test file that goes with a bundled set


def _read_rows(path: Path, reader: Callable[[Path], list]) -> list:
    """Rows of a labelled file, every kind of bad file turned into one AppError line."""
    try:
        return reader(path)
    except DocumentError as exc:  # missing, binary, malformed, a missing column or value: one line each
        raise AppError(named(str(exc), path)) from exc
    except OSError as exc:
        raise AppError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc


def demonstration_set(choice: str, upload: str | os.PathLike | None = None, template: str | None = None, *,
                      max_bytes: int | None = None, max_rows: int = 2000) -> DemonstrationSet:
    """A bundled set by its label, or an uploaded CSV/TSV/JSONL file with text and label columns."""
    if upload:
        path = Path(upload)
        check_file_size(path, max_bytes)
        rows = _read_rows(path, read_labelled)
        template = template or icl.SENTIMENT_TEMPLATE
        name, test_file = path.name, None
    elif choice in DEMONSTRATION_SETS:
        rel, task, test_rel = DEMONSTRATION_SETS[choice]
        path = ASSETS / rel
        rows = _read_rows(path, read_labelled)
        template, name, test_file = icl.template_for(task), choice, ASSETS / test_rel
    else:
        raise AppError("Choose a bundled demonstration set, or upload a CSV/TSV/JSONL file with text and label columns.")
    rows = [(t, label) for t, label in rows if t.strip() and label.strip()][:max_rows]
    if len(icl.label_set(rows)) < 2:
        raise AppError(f"{name}: demonstrations need at least two different labels")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    return DemonstrationSet(name=name, key=f"{digest}|{template}|{len(rows)}", template=template, examples=rows,
                            test_file=test_file)


def load_demonstrations(model: LongMemModel, session: Session, demos: DemonstrationSet, *, chunk_size: int | None = None,
                        capacity: int | None = None,
                        progress: Callable[[int, int], None] | None = None) -> Demonstrations:
    """Read a demonstration set into the session's classification memory (kept while the same set is used)."""
    chunk_size, capacity = check_bank_settings(model, chunk_size, capacity)
    key = f"{demos.key}|{chunk_size}|{capacity}"
    if session.demonstrations is not None and session.demonstrations.key == key:
        return session.demonstrations
    with busy(session):
        bank = model.new_bank(capacity=capacity, chunk_size=chunk_size)
        memory = icl.memorize_demonstrations(model, demos.examples, bank, template=demos.template, progress=progress)
        session.demonstrations = Demonstrations(key=key, name=demos.name, template=demos.template,
                                                labels=icl.label_set(demos.examples), bank=bank, memory=memory)
        return session.demonstrations


def _probabilities(scores: dict[str, float]) -> dict[str, float]:
    """Label log-probabilities renormalised over the labels (what the prediction chooses among)."""
    top = max(scores.values())
    exp = {label: math.exp(s - top) for label, s in scores.items()}
    total = sum(exp.values())
    return {label: e / total for label, e in exp.items()}


def classify_text(model: LongMemModel, session: Session, text: str, *, k: int = icl.DEFAULT_K,
                  seed: int = icl.DEFAULT_SEED, top: int = 5, top_k: int | None = None,
                  max_chars: int | None = None) -> dict:
    """One text classified with memory and in context only, with the demonstrations memory gave most weight."""
    text = check_question(text, max_chars, what="text to classify")
    if not text:
        raise AppError("Type a text to classify, or upload a test file.")
    loaded = _loaded(session)
    context = icl.context_text(loaded.template, icl.sample_context(loaded.memory.examples, k, seed))
    with busy(session):
        with_memory = icl.classify(model, text, loaded.labels, context=context, bank=loaded.bank,
                                   template=loaded.template, top=max(top * 4, 8),
                                   top_k=retrieval_width(top_k, loaded.bank))
        alone = icl.classify(model, text, loaded.labels, context=context, template=loaded.template)
    shares: dict[int, float] = {}
    for r in with_memory.retrieved:  # a chunk may span two demonstrations: its share is split evenly
        covering = loaded.memory.covering(r.info.char_start, r.info.char_end)
        for i in covering:
            shares[i] = shares.get(i, 0.0) + r.score / len(covering)
    best = sorted(shares.items(), key=lambda kv: -kv[1])[:top]
    return {"text": text, "label": with_memory.label, "label_in_context_only": alone.label,
            "probabilities": _probabilities(with_memory.scores),
            "probabilities_in_context_only": _probabilities(alone.scores),
            "log_probs": with_memory.scores, "log_probs_in_context_only": alone.scores,
            "retrieved": [{"index": i, "text": loaded.memory.examples[i][0], "label": loaded.memory.examples[i][1],
                           "share": round(share, 6)} for i, share in best],
            "k": min(k, len(loaded.memory.examples)), "demonstrations": len(loaded.memory.examples)}


def read_test_file(path: str | os.PathLike, *, max_bytes: int | None = None, max_rows: int = 200) -> list[tuple[str, str | None]]:
    path = Path(path)
    check_file_size(path, max_bytes)
    rows = [(t, label) for t, label in _read_rows(path, icl.read_test_set) if t.strip()]
    if not rows:
        raise AppError(f"{path.name}: no texts to classify")
    return rows[:max_rows]


def classify_rows(model: LongMemModel, session: Session, rows: Sequence[tuple[str, str | None]], *,
                  k: int = icl.DEFAULT_K, seed: int = icl.DEFAULT_SEED,
                  progress: Callable[[int, int], None] | None = None, top_k: int | None = None) -> dict:
    """Every row with memory and in context only; accuracy of both when the rows have labels."""
    loaded = _loaded(session)
    labelled = all(label is not None for _, label in rows)
    with busy(session):
        result = icl.evaluate(model, [(t, label or "") for t, label in rows], loaded.memory.examples, k=k,
                              seed=seed, template=loaded.template, labels=loaded.labels, bank=loaded.bank,
                              progress=progress, top_k=retrieval_width(top_k, loaded.bank))
    table = [{"text": t, "label": label, "with_memory": m, "in_context_only": c}
             for (t, label), m, c in zip(rows, result.memory_predictions, result.context_predictions)]
    unknown = sorted({label for _, label in rows if label is not None} - set(loaded.labels))
    return {"rows": table, "n": len(rows), "labelled": labelled,
            "accuracy_memory": result.accuracy_memory if labelled else None,
            "accuracy_context": result.accuracy_context if labelled else None,
            "unknown_labels": unknown, "k": result.k, "labels": loaded.labels,
            "demonstrations": len(loaded.memory.examples)}


def _loaded(session: Session) -> Demonstrations:
    if session.demonstrations is None:
        raise AppError("Load a demonstration set first.")
    return session.demonstrations
