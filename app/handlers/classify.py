"""The Classify tab's handlers: demonstrations into memory, then texts classified in the default mode (beyond the
paper: the mode chosen on demonstrations held out of memory, ``icl_select.py``), in context only and with the
paper's memory layer."""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from longmem_core import DocumentError, LongMemModel, limits, read_labelled
from longmem_core.classify import icl, icl_modes, key_scores
from longmem_core.classify import settings as classify_settings

from ..session import Classifier, Demonstrations, Session
from .common import ASSETS, AppError, busy, check_bank_settings, check_file_size, check_question, named, retrieval_width

if TYPE_CHECKING:
    import torch

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


def _read_rows(path: Path, reader: Callable[[Path], list], kind: str) -> list:
    """Rows of a labelled file, every kind of bad file (a row over the limit of ``kind`` too) turned into one
    AppError line."""
    try:
        rows = reader(path)
        limits.check_rows(rows, kind, path.name)
        return rows
    except limits.TooLongError as exc:
        raise AppError(str(exc)) from exc
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
        rows = _read_rows(path, read_labelled, "demonstration")
        template = template or icl.SENTIMENT_TEMPLATE
        name, test_file = path.name, None
    elif choice in DEMONSTRATION_SETS:
        rel, task, test_rel = DEMONSTRATION_SETS[choice]
        path = ASSETS / rel
        rows = _read_rows(path, read_labelled, "demonstration")
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


# the modes the tab computes beside the paper's memory layer: the default (auto: a combination learned on held-out
# demonstrations), every candidate whose held-out accuracy is shown beside it, in context only (the baseline shown
# beside it) and the 5-NN vote over the same keys (cheap: no model pass beyond the text's key)
TAB_MODES: tuple[str, ...] = tuple(dict.fromkeys((icl_modes.DEFAULT_MODE, "auto",
                                                   *classify_settings.SELECTION.candidates,
                                                   "context", "context_cal", "centroid", "knn")))
LEARNED = ("in-context scores, memory's label centroids and its nearest demonstrations, weighed as demonstrations "
           "held out of memory taught")
MODE_NAMES = {  # plain words for the page
    "auto": LEARNED, "combined": LEARNED,
    "centroid_context": "memory's label centroids + calibrated in-context scores",
    "centroid": "memory's label centroids", "context_cal": "calibrated in-context scores",
    "context": "in context only", "knn": "5 nearest demonstrations in memory vote", "memory": "the paper's memory layer",
    "kate": "nearest demonstrations from memory into the prompt"}


def _probabilities(scores: dict[str, float]) -> dict[str, float]:
    """Label log-probabilities renormalised over the labels (what the prediction chooses among)."""
    top = max(scores.values())
    exp = {label: math.exp(s - top) for label, s in scores.items()}
    total = sum(exp.values())
    return {label: e / total for label, e in exp.items()}


def _classifier(model: LongMemModel, loaded: Demonstrations, k: int, seed: int, top_k: int | None) -> Classifier:
    """The session's classifier for this k, seed and top-k: built once (the random prompt read twice, with and
    without memory, and its content-free scores), then reused for every text until one of them changes."""
    key = (k, seed, top_k)
    if loaded.classifier is None or loaded.classifier.key != key:
        loaded.classifier = None  # the old one is dropped before the new one's caches are read
        context = icl.context_text(loaded.template, icl.sample_context(loaded.memory.examples, k, seed))
        modes = icl_modes.ModeClassifier(model, loaded.labels, loaded.template, context, loaded.bank,
                                         loaded.memory, TAB_MODES, k, classify_settings.MODE.neighbours)
        loaded.classifier = Classifier(key=key, modes=modes,
                                       memory_cache=model.cache_prompt(context, loaded.bank, top_k) if context else None)
    return loaded.classifier


def _memory_mode(model: LongMemModel, loaded: Demonstrations, classifier: Classifier, text: str, *, top: int,
                 top_k: int | None) -> icl.Prediction:
    """The paper's mode: the same random prompt, the memory layer reading every demonstration."""
    modes = classifier.modes
    return icl.classify(model, text, loaded.labels, context=modes.context, bank=loaded.bank, template=loaded.template,
                        top=top, top_k=top_k, cache=classifier.memory_cache)


def _nearest(classifier: Classifier, key: torch.Tensor | None, top: int) -> list[tuple[int, float]]:
    """The demonstrations whose centred memory keys are nearest the text's ``key`` [G*D] (what the centroids are
    made of)."""
    keys = classifier.modes.centred
    if keys is None or key is None or top <= 0:
        return []
    return key_scores.nearest(keys, key_scores.centre_query(keys, key), top)


def selection(classifier: Classifier) -> dict | None:
    """How ``auto`` classifies these demonstrations (learned once per classifier; None when auto is not shown): the
    combination's weights or the single mode used, in plain words, why, and the held-out accuracy and macro-F1 of
    the combination and of every candidate."""
    if "auto" not in classifier.modes.modes:
        return None
    chosen = classifier.modes.select()
    return chosen.to_dict() | {"chosen_name": MODE_NAMES.get(chosen.chosen, chosen.chosen)}


def classify_text(model: LongMemModel, session: Session, text: str, *, k: int = icl.DEFAULT_K,
                  seed: int = icl.DEFAULT_SEED, top: int = 5, top_k: int | None = None,
                  max_chars: int | None = None) -> dict:
    """One text classified in the default mode (beyond the paper), in context only and with the paper's memory
    layer, with the demonstrations nearest in memory and those the memory layer gave most weight."""
    text = check_question(text, max_chars, what="text to classify")
    if not text:
        raise AppError("Type a text to classify, or upload a test file.")
    loaded = _loaded(session)
    top_k = retrieval_width(top_k, loaded.bank)
    with busy(session):
        classifier = _classifier(model, loaded, k, seed, top_k)
        key = classifier.modes.query_key(text)  # [G*D]: the text read once, for the modes and its nearest
        predicted = classifier.modes.predict(text, TAB_MODES, key=key)
        with_memory = _memory_mode(model, loaded, classifier, text, top=max(top * 4, 8), top_k=top_k)
        nearest = _nearest(classifier, key, top)
    predicted["memory"] = with_memory
    shares: dict[int, float] = {}
    for r in with_memory.retrieved:  # a chunk may span two demonstrations: its share is split evenly
        covering = loaded.memory.covering(r.info.char_start, r.info.char_end)
        for i in covering:
            shares[i] = shares.get(i, 0.0) + r.score / len(covering)
    best = sorted(shares.items(), key=lambda kv: -kv[1])[:top]
    examples = loaded.memory.examples
    default, alone = predicted[icl_modes.DEFAULT_MODE], predicted["context"]
    return {"text": text, "mode": icl_modes.DEFAULT_MODE,
            "mode_name": MODE_NAMES.get(icl_modes.DEFAULT_MODE, icl_modes.DEFAULT_MODE),
            "selection": selection(classifier),
            "label": default.label, "probabilities": _probabilities(default.scores),
            "label_in_context_only": alone.label, "probabilities_in_context_only": _probabilities(alone.scores),
            "label_memory": with_memory.label, "probabilities_memory": _probabilities(with_memory.scores),
            "modes": {mode: {"label": p.label, "probabilities": _probabilities(p.scores)}
                      for mode, p in predicted.items() if mode != "knn"}
            | {"knn": {"label": predicted["knn"].label, "votes": predicted["knn"].scores}},
            "nearest": [{"index": i, "text": examples[i][0], "label": examples[i][1], "cosine": round(sim, 6)}
                        for i, sim in nearest],
            "retrieved": [{"index": i, "text": examples[i][0], "label": examples[i][1], "share": round(share, 6)}
                          for i, share in best],
            "k": min(k, len(examples)), "demonstrations": len(examples)}


def read_test_file(path: str | os.PathLike, *, max_bytes: int | None = None, max_rows: int = 200) -> list[tuple[str, str | None]]:
    path = Path(path)
    check_file_size(path, max_bytes)
    rows = [(t, label) for t, label in _read_rows(path, icl.read_test_set, "text to classify") if t.strip()]
    if not rows:
        raise AppError(f"{path.name}: no texts to classify")
    return rows[:max_rows]


def classify_rows(model: LongMemModel, session: Session, rows: Sequence[tuple[str, str | None]], *,
                  k: int = icl.DEFAULT_K, seed: int = icl.DEFAULT_SEED,
                  progress: Callable[[int, int], None] | None = None, top_k: int | None = None) -> dict:
    """Every row in the default mode, in context only, with the paper's memory layer and by the 5-NN vote;
    each one's accuracy when the rows have labels."""
    loaded = _loaded(session)
    labelled = all(label is not None for _, label in rows)
    top_k = retrieval_width(top_k, loaded.bank)
    table = []
    with busy(session):
        classifier = _classifier(model, loaded, k, seed, top_k)
        chosen = selection(classifier)  # made before the first row (once per classifier), timed apart
        start = time.perf_counter()
        for i, (text, label) in enumerate(rows):
            predicted = classifier.modes.predict(text, (icl_modes.DEFAULT_MODE, "context", "knn"))
            memory = _memory_mode(model, loaded, classifier, text, top=0, top_k=top_k)
            table.append({"text": text, "label": label, "default": predicted[icl_modes.DEFAULT_MODE].label,
                          "in_context_only": predicted["context"].label, "with_memory": memory.label,
                          "knn": predicted["knn"].label})
            if progress:
                progress(i + 1, len(rows))
        seconds = time.perf_counter() - start

    def accuracy(column: str) -> float | None:
        return sum(r[column] == r["label"] for r in table) / len(table) if labelled and table else None
    unknown = sorted({label for _, label in rows if label is not None} - set(loaded.labels))
    return {"rows": table, "n": len(rows), "labelled": labelled, "mode": icl_modes.DEFAULT_MODE,
            "mode_name": MODE_NAMES.get(icl_modes.DEFAULT_MODE, icl_modes.DEFAULT_MODE),
            "accuracy_default": accuracy("default"), "accuracy_context": accuracy("in_context_only"),
            "accuracy_memory": accuracy("with_memory"), "accuracy_knn": accuracy("knn"),
            "unknown_labels": unknown, "k": min(k, len(loaded.memory.examples)), "labels": loaded.labels,
            "demonstrations": len(loaded.memory.examples), "selection": chosen, "seconds": seconds,
            # the choice's time against classifying these rows (every mode shown, the paper's memory layer too)
            "added_time": chosen["seconds"] / max(seconds, 1e-9) if chosen else None}


def _loaded(session: Session) -> Demonstrations:
    if session.demonstrations is None:
        raise AppError("Load a demonstration set first.")
    return session.demonstrations
