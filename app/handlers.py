"""Plain functions behind the app: each takes the model, a Session and plain values, calls longmem_core's
public API, and returns plain values. No Gradio here, so every one is testable without a browser.

Bad input raises ``AppError`` with a message for the user, before anything in the session changes.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from longmem_core import (BankMismatchError, Document, DocumentError, LongMemModel, MemoryBank, default_checkpoint,
                          read_document, read_labelled)
from longmem_core import icl

from .background import Stopped
from .session import Demonstrations, Session

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BOOKS = {  # bundled public-domain examples: label -> file in assets/
    "The Time Machine, chapter I (H. G. Wells; 10 KB, ~2,500 tokens)": "the_time_machine_ch1.txt",
    "The Time Machine, whole book (H. G. Wells; 180 KB, ~45,000 tokens)": "the_time_machine.txt",
}
DEMONSTRATION_SETS = {  # label -> (demonstrations, task for the template, matching labelled test file)
    "SST-2 movie reviews (300; positive / negative)": ("icl/sst2_demonstrations.jsonl", "sst2", "icl/sst2_test.jsonl"),
    "Subj sentences (300; subjective / objective)": ("icl/subj_demonstrations.jsonl", "subj", "icl/subj_test.jsonl"),
}
UPLOADED_SET = "My uploaded file"
TEMPLATES = {"Review: … Sentiment: … (sentiment)": icl.SENTIMENT_TEMPLATE,
             "Input: … Type: … (subjectivity)": icl.SUBJ_TEMPLATE}
BANK_FILES = ("meta.json", "tensors.safetensors")
CONTEXT_CHARS = 160  # characters of surrounding text returned with a retrieved chunk


class AppError(ValueError):
    """Bad input, or a request that cannot be served now. The message is shown to the user as it is."""


# -- the model --

def load_model(backbone: str | None = None, checkpoint: str | os.PathLike | None = None) -> LongMemModel:
    """The default backbone with the trained SideNet when there is one, else the untrained SideNet."""
    checkpoint = checkpoint or default_checkpoint()
    return LongMemModel.load(backbone=backbone, checkpoint=str(checkpoint) if checkpoint else None)


def top_k_choices(model: LongMemModel) -> list[int]:
    """Retrieval widths offered in Settings (tokens per query token and head); the model's own among them."""
    return sorted({8, 16, 32, 64, 128, 256, model.cfg.top_k})


def retrieval_width(top_k: int | None, bank: MemoryBank | None) -> int | None:
    """``top_k`` rounded up to whole chunks of ``bank`` (None: the model's own)."""
    if not top_k or bank is None:
        return None
    c = bank.chunk_size
    return max(c, -(-int(top_k) // c) * c)


def chunk_size_choices(model: LongMemModel) -> list[int]:
    """Chunk sizes the model can read: divisors of its retrieval width top_k (paper: 4 of 64)."""
    return [c for c in range(1, min(model.cfg.top_k, 32) + 1) if model.cfg.top_k % c == 0]


def _check_bank_settings(model: LongMemModel, chunk_size: int | None, capacity: int | None) -> tuple[int, int]:
    chunk_size = int(chunk_size or model.cfg.chunk_size)
    capacity = int(capacity or model.cfg.capacity)
    if chunk_size not in chunk_size_choices(model):
        raise AppError(f"Chunk size {chunk_size} does not fit this model; choose one of {chunk_size_choices(model)}.")
    if capacity < chunk_size:
        raise AppError(f"Memory capacity must hold at least one chunk ({chunk_size} tokens).")
    return chunk_size, capacity


BUSY = "This session is busy (reading into memory, answering or classifying). Wait for it to finish, or press Stop."


@contextmanager
def _busy(session: Session) -> Iterator[None]:
    """Hold the session while its memory is written or read, so two of its requests never overlap."""
    if not session.busy.acquire(blocking=False):
        raise AppError(BUSY)
    try:
        yield
    finally:
        session.busy.release()


def wait_idle(session: Session, seconds: float = 60.0) -> bool:
    """Wait until the session's current work (stopping after its current step) has ended."""
    if session.busy.acquire(timeout=seconds):
        session.busy.release()
        return True
    return False


# -- filling memory --

@dataclass
class MemorizeProgress:
    name: str  # document being read
    index: int  # its position among the documents (0-based)
    count: int  # documents in this run
    done: int  # tokens of this document read so far
    total: int  # tokens in this document
    seconds: float  # since the run began
    eta: float | None  # seconds left for the whole run, estimated from the speed so far


@dataclass
class MemorizeReport:
    documents: list[dict] = field(default_factory=list)  # {"name", "tokens", "chunks", "seconds"} per document read
    stopped: bool = False  # the user pressed Stop; what was read before stays in memory
    seconds: float = 0.0


def read_documents(paths: Sequence[str | os.PathLike], max_bytes: int | None = None) -> list[Document]:
    """Every file as a Document, or AppError naming the first one that cannot be read (nothing is read then)."""
    if not paths:
        raise AppError("Choose one or more files (.txt, .md, .pdf), or pick a bundled example.")
    documents = []
    for path in paths:
        try:
            documents.append(read_document(path, max_bytes=max_bytes))
        except DocumentError as exc:
            raise AppError(str(exc)) from exc
    return documents


def bundled_book(label: str) -> Path:
    if label not in BOOKS:
        raise AppError(f"Unknown example {label!r}; choose one of: {', '.join(BOOKS)}.")
    return ASSETS / BOOKS[label]


def memorize(model: LongMemModel, session: Session, documents: Sequence[Document], *, chunk_size: int | None = None,
             capacity: int | None = None, progress: Callable[[MemorizeProgress], None] | None = None) -> MemorizeReport:
    """Read documents into the session's bank (a new one, with the given chunk size and capacity, while it is
    empty). ``progress`` gets a MemorizeProgress after every segment; if it raises ``Stopped`` the reading
    stops there and what was read stays."""
    chunk_size, capacity = _check_bank_settings(model, chunk_size, capacity)
    with _busy(session):
        bank = session.bank
        if bank is None or (len(bank) == 0 and (bank.chunk_size, bank.capacity) != (chunk_size, capacity)):
            bank = session.bank = model.new_bank(capacity=capacity, chunk_size=chunk_size)
        report, t0 = MemorizeReport(), time.perf_counter()
        chars_left = sum(len(d.text) for d in documents)
        for index, doc in enumerate(documents):
            chars_left -= len(doc.text)
            t_doc = time.perf_counter()

            def on_segment(done: int, total: int) -> None:
                elapsed = time.perf_counter() - t_doc
                eta = None
                if done and elapsed > 0:
                    later_tokens = chars_left * total / max(len(doc.text), 1)  # same tokens per character
                    eta = (total - done + later_tokens) * elapsed / done
                if progress:
                    progress(MemorizeProgress(doc.name, index, len(documents), done, total,
                                              time.perf_counter() - t0, eta))
            try:
                stats = model.memorize(doc.text, bank, source=doc.name, progress=on_segment)
            except Stopped:
                report.stopped = True
                break
            report.documents.append({"name": doc.name, "tokens": stats.tokens, "chunks": stats.chunks,
                                     "seconds": round(stats.seconds, 2)})
        report.seconds = time.perf_counter() - t0
        return report


def bank_stats(session: Session) -> dict:
    """Size, capacity and sources of the session's memory, for display and for API clients."""
    bank = session.bank
    if bank is None:
        return {"tokens": 0, "chunks": 0, "capacity": None, "chunk_size": None, "used": 0.0, "sources": [],
                "questions": len(session.turns)}
    stats = bank.stats()
    chunks_per_source: dict[int, int] = {}
    for s in bank.chunk_source.tolist():
        chunks_per_source[s] = chunks_per_source.get(s, 0) + 1
    sources = [{"name": src["name"], "chunks": chunks_per_source.get(i, 0), "characters": len(src["text"])}
               for i, src in enumerate(bank.sources)]
    return {"tokens": stats["tokens"], "chunks": stats["chunks"], "capacity": stats["capacity"],
            "chunk_size": bank.chunk_size, "used": round(stats["used"], 6), "bytes": stats["bytes"],
            "sources": sources, "questions": len(session.turns)}


def clear(session: Session) -> None:
    """Forget everything the session read, asked and classified."""
    with _busy(session):
        session.forget_documents()
        session.demonstrations = None


# -- keeping and sharing a bank --

def save_bank(session: Session, directory: str | os.PathLike) -> Path:
    """The session's bank as a .zip file in a new folder under ``directory`` (to download and load again
    later). The session keeps only its latest saved file: the previous one is deleted."""
    if session.bank is None or len(session.bank) == 0:
        raise AppError("Memory is empty: read a document first, then save.")
    Path(directory).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bank-", dir=directory))
    try:
        with _busy(session), tempfile.TemporaryDirectory(dir=folder) as tmp:
            saved = session.bank.save(Path(tmp) / "bank")
            target = folder / f"longmem-bank-{len(session.bank)}-tokens.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
                for file in sorted(saved.iterdir()):
                    zf.write(file, file.name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    session.drop_saved()
    session.saved = folder
    return target


def load_bank(model: LongMemModel, session: Session, path: str | os.PathLike, max_bytes: int | None = None) -> dict:
    """Replace the session's bank by one saved with ``save_bank``. Anything wrong (not a bank, too large,
    another backbone) raises AppError and leaves the session's memory as it was."""
    path = Path(path)
    _file_too_large(path, max_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                unpacked = sum(i.file_size for i in zf.infolist())
                if not set(BANK_FILES) <= set(names):
                    raise AppError(f"{path.name}: not a LongMem memory bank (no {' / '.join(BANK_FILES)} inside)")
                if any(n != os.path.basename(n) or n.startswith(".") for n in names):
                    raise AppError(f"{path.name}: not a LongMem memory bank (unexpected folders inside)")
                if max_bytes is not None and unpacked > 2 * max_bytes:
                    raise AppError(f"{path.name}: unpacks to {unpacked / 1e6:.0f} MB, over the limit")
                zf.extractall(tmp)
            bank = MemoryBank.load(tmp)
        except AppError:
            raise
        except zipfile.BadZipFile as exc:
            raise AppError(f"{path.name}: not a .zip file saved by LongMem Studio") from exc
        except Exception as exc:  # safetensors, faiss and json raise their own types for corrupt files
            raise AppError(f"{path.name}: not a readable memory bank ({str(exc).splitlines()[0]})") from exc
    try:
        model.check_bank(bank)
    except BankMismatchError as exc:
        raise AppError(f"{path.name}: {exc}") from exc
    with _busy(session):
        session.forget_documents()
        session.bank = bank
    return bank_stats(session)


# -- chat --

@dataclass
class ChatResult:
    """One answer, filled in as it streams."""

    question: str
    answer: str = ""
    backbone_answer: str | None = None  # the backbone alone, when compared
    retrieved: list[dict] = field(default_factory=list)  # Retrieved.to_dict() of the chunks attended to most
    memory_share: float = 0.0  # mean share of the memory layer's output that came from memory
    memory_tokens: int = 0  # tokens in memory when the question was asked
    seconds: float = 0.0
    done: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def chat(model: LongMemModel, session: Session, question: str, *, compare: bool = False, top: int = 5,
         max_new_tokens: int = 128, temperature: float = 0.0, history_turns: int = 2,
         top_k: int | None = None) -> Iterator[ChatResult]:
    """Answer ``question`` with the session's memory, streaming: yields the growing ChatResult, the last one
    with ``done`` set, the retrieved chunks listed and the retrieval heat of the session updated."""
    question = (question or "").strip()
    if not question:
        raise AppError("Type a question first.")
    with _busy(session):
        bank = session.bank if session.bank is not None and len(session.bank) else None
        history = []
        for turn in session.turns[-history_turns:] if history_turns > 0 else []:
            history += [{"role": "user", "content": turn["question"]},
                        {"role": "assistant", "content": turn["answer"]}]
        prompt = model.chat_ids(question, history)
        result, t0 = ChatResult(question, memory_tokens=len(bank) if bank else 0), time.perf_counter()
        gen = model.generate(prompt, bank, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_k=retrieval_width(top_k, bank))
        for piece in gen:
            result.answer += piece
            yield result
        result.answer = gen.text
        if bank is not None:
            result.memory_share = gen.memory_share
            result.retrieved = [context_of(bank, r.to_dict()) for r in model.retrieved_for(gen, bank, top=top)]
            total = sum(gen.chunk_mass.values()) or 1.0
            for cid, mass in gen.chunk_mass.items():
                session.heat[cid] = session.heat.get(cid, 0.0) + mass / total
            session.last_retrieved = [r["chunk_id"] for r in result.retrieved]
        if compare:
            result.backbone_answer = ""
            yield result
            alone = model.generate(prompt, None, max_new_tokens=max_new_tokens, temperature=temperature,
                                   backbone_only=True)
            for piece in alone:
                result.backbone_answer += piece
                yield result
            result.backbone_answer = alone.text
        result.seconds = time.perf_counter() - t0
        result.done = True
        session.turns.append({"question": question, "answer": result.answer,
                              "backbone_answer": result.backbone_answer})
    yield result


def context_of(bank: MemoryBank, chunk: dict, chars: int = CONTEXT_CHARS) -> dict:
    """The text around a retrieved chunk (``before``/``after``), cut at word boundaries."""
    ids = bank.chunk_ids
    pos = int(chunk["chunk_id"] - ids[0]) if len(ids) else -1
    if not 0 <= pos < len(ids) or chunk["char_start"] < 0:
        return {**chunk, "before": "", "after": ""}
    text = bank.sources[int(bank.chunk_source[pos])]["text"]
    start, end = chunk["char_start"], chunk["char_end"]
    before = text[max(0, start - chars):start]
    after = text[end:end + chars]
    if start - chars > 0 and " " in before:
        before = before[before.index(" ") + 1:]
    if end + chars < len(text) and " " in after:
        after = after[:after.rindex(" ")]
    return {**chunk, "before": before, "after": after}


def new_conversation(session: Session) -> None:
    """Forget the chat turns (memory and retrieval heat stay)."""
    session.turns = []


# -- few-shot classification --

@dataclass
class DemonstrationSet:
    name: str
    key: str  # identifies the set's content and template
    template: str
    examples: list[tuple[str, str]]
    test_file: Path | None = None  # the bundled labelled test file that goes with a bundled set


def _file_too_large(path: Path, max_bytes: int | None) -> None:
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise AppError(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.1f} MB")


def _read_rows(path: Path, reader: Callable[[Path], list]) -> list:
    """Rows of a labelled file, every kind of bad file turned into one AppError line."""
    try:
        return reader(path)
    except DocumentError as exc:  # missing, binary, malformed, a missing column or value: one line each
        raise AppError(str(exc)) from exc
    except OSError as exc:
        raise AppError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc


def demonstration_set(choice: str, upload: str | os.PathLike | None = None, template: str | None = None, *,
                      max_bytes: int | None = None, max_rows: int = 2000) -> DemonstrationSet:
    """A bundled set by its label, or an uploaded CSV/TSV/JSONL file with text and label columns."""
    if upload:
        path = Path(upload)
        _file_too_large(path, max_bytes)
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
    chunk_size, capacity = _check_bank_settings(model, chunk_size, capacity)
    key = f"{demos.key}|{chunk_size}|{capacity}"
    if session.demonstrations is not None and session.demonstrations.key == key:
        return session.demonstrations
    with _busy(session):
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
                  seed: int = icl.DEFAULT_SEED, top: int = 5, top_k: int | None = None) -> dict:
    """One text classified with memory and in context only, with the demonstrations memory gave most weight."""
    text = (text or "").strip()
    if not text:
        raise AppError("Type a text to classify, or upload a test file.")
    loaded = _loaded(session)
    context = icl.context_text(loaded.template, icl.sample_context(loaded.memory.examples, k, seed))
    with _busy(session):
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
    _file_too_large(path, max_bytes)
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
    with _busy(session):
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
