"""``eval-qa``: factual questions about a document in memory, for every answer mode and a BM25 baseline.

Questions are JSON lines ``{"question": ..., "answers": [...]}``. The document (its first ``--max-chars``
characters) is memorized once; each question is answered in every mode. Per mode:

- ``accuracy``: share of questions whose answer contains one of the answers (case-insensitive; runs of
  whitespace count as one space, so an answer broken over a line in the book still matches);
- ``retrieval_recall``: share of questions where one of the answers occurs in what the mode retrieved: the text
  it read into its prompt (``Answer.context``) if any, else the passages around the chunks it listed (each
  chunk widened by ``--context-chars`` on both sides, to whole words).

- ``answered_when_held``: share of the questions whose retrieved text holds an answer that are answered correctly;
- ``incomplete``: answers that stop mid-sentence; ``not_found``: answers that say nothing read back supports them;
- ``short_answers``, ``short_correct`` (the quote mode): answers that are a short span of their quote, the rest
  being the quoted sentence itself (``spans.answer_span``), and how many of the short ones are right;
- ``page_holds_answer`` (modes that quote): share of the correct answers whose quote's page holds an answer, and
  ``page_label_match``: whose quote's page label is the question's ``page_label`` (where the set gives one).

With ``--conversation`` every mode is also run as one conversation (``conversation.Conversation``: the questions
asked one after another, as the app asks them), in rows named ``<mode>@conversation``.

The ``bm25`` row ranks passages of the same size (the document cut into consecutive passages of
2 x context-chars + 16 characters) with BM25, as many as the modes list (``--search-top``); its accuracy is null.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

from ..options import model_flags
from ..answer import answer as answers
from ..answer import settings as answer_settings
from ..model import search
from .bm25 import BM25, passage_span, passage_units
from ..answer.conversation import Conversation
from ..memory.memory_bank import page_of
from ..documents.records import has_answers, has_strings, read_records
from ..documents.reading_plan import first_part
from .eval_niah import BM25_MODE, parse_modes

SOURCE = "document"  # the source name of a document given as a string (the command uses the file's name, as the app)
CHUNK_CHARS = 16  # about one 4-token chunk: added to a BM25 passage so it is as long as a mode's passage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", required=True, help="the document the questions are about (.txt, .md, .pdf)")
    parser.add_argument("--questions", required=True, help='JSON lines {"question": ..., "answers": [...]}')
    parser.add_argument("--max-chars", type=int, default=None, help="memorize only the first N characters")
    parser.add_argument("--modes", default=None,
                        help=f"comma-separated answer modes and/or {BM25_MODE} (default: every mode, and {BM25_MODE})")
    parser.add_argument("--search-top", "--top", type=int, default=answer_settings.ANSWER.search_top,
                        help="chunks each mode lists (and BM25 passages returned)")
    parser.add_argument("--context-chars", type=int, default=200,
                        help="characters of text on each side of a listed chunk that count as retrieved with it")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--searches", default="",
                        help="comma-separated searches (model, hybrid, bm25) each mode that reads back is also run "
                             "with in place of its own, as rows '<mode>[<search>]' (e.g. 'model,bm25': the memory's "
                             "own search alone and BM25 alone beside the default mode's hybrid)")
    parser.add_argument("--conversation", action="store_true",
                        help="also ask every mode's questions one after another in one conversation, as the app does")
    parser.add_argument("--records-out", default=None,
                        help="also append every question's record to this JSON-lines file as soon as it is complete")


def read_questions(path: str | Path) -> list[dict]:
    """The questions of a JSON-lines file; a malformed line raises ValueError naming its line number."""
    return read_records(path, lambda row: has_strings(row, ("question",)) and has_answers(row),
                        '{"question": "...", "answers": ["...", ...]}', "questions")


def normalize(text: str) -> str:
    """Lower case, every run of whitespace one space (a book's line breaks fall inside answers)."""
    return " ".join(text.split()).lower()


def contains_any(text: str, wanted: list[str]) -> bool:
    """Does ``text`` contain one of ``wanted`` (case-insensitive, whitespace runs counted as one space)?"""
    low = normalize(text)
    return any(normalize(w) in low for w in wanted)


def retrieved_text(document: str, ans: answers.Answer, context_chars: int, source: str = SOURCE) -> str:
    """What the mode retrieved: its read-back context if it has one, else the passages around its listed chunks."""
    if ans.context:
        return ans.context
    spans = [passage_span(document, r.info.char_start, r.info.char_end, context_chars)
             for r in ans.chunks if r.info.source == source]
    return "\n".join(document[s:e] for s, e in spans)


CONVERSATION = "@conversation"  # suffix of a mode's conversation run


def page_text(document: str, pages: list[int] | None, page: int | None) -> str:
    """The text of 1-based ``page`` of ``document`` (the whole document when it has no pages)."""
    if not pages or page is None:
        return document
    end = pages[page] if page < len(pages) else len(document)
    return document[pages[page - 1]:end]


def score(ans: answers.Answer, q: dict, document: str, context_chars: int, source: str,
          pages: list[int] | None) -> dict:
    """One answer's scores: correct, the answer held by what was retrieved, and, for an answer with a quote,
    whether the quote and its page hold an answer and its page label is the question's."""
    out = {"correct": contains_any(ans.text, q["answers"]),
           "retrieved": contains_any(retrieved_text(document, ans, context_chars, source), q["answers"]),
           "complete": ans.complete, "output": ans.text}
    if ans.quote is not None:
        page = page_of(pages, ans.quote.char_start)
        out.update(quote=ans.quote.text, short=ans.short, page_label=ans.quote.page_label, section=ans.quote.section,
                   quote_holds_answer=contains_any(ans.quote.text, q["answers"]),
                   page_holds_answer=contains_any(page_text(document, pages, page), q["answers"]))
        if q.get("page_label") is not None:
            out["page_label_match"] = ans.quote.page_label == str(q["page_label"])
    return out


def summary(mode: str, scores: list[dict]) -> dict:
    """A mode's row from its answers' scores."""
    n = len(scores)
    if mode == BM25_MODE:
        return {"mode": mode, "accuracy": None, "retrieval_recall": sum(s["retrieved"] for s in scores) / n, "n": n}
    correct = [s for s in scores if s["correct"]]
    held = [s for s in scores if s["retrieved"]]
    row = {"mode": mode, "accuracy": len(correct) / n, "retrieval_recall": len(held) / n, "n": n,
           "answered_when_held": sum(s["correct"] for s in held) / len(held) if held else None,
           "incomplete": sum(not s["complete"] for s in scores),
           "not_found": sum(s["output"] == answers.quote.NOT_FOUND for s in scores)}
    shorts = [s for s in scores if s.get("short")]
    if any("short" in s for s in scores):  # quote mode: short answers, and how many of them were right
        row["short_answers"], row["short_correct"] = len(shorts), sum(s["correct"] for s in shorts)
    quoted = [s for s in correct if "quote" in s]
    if quoted:
        row["page_holds_answer"] = sum(s["page_holds_answer"] for s in quoted) / len(quoted)
        labelled = [s for s in quoted if "page_label_match" in s]
        if labelled:
            row["page_label_match"] = sum(s["page_label_match"] for s in labelled) / len(labelled)
    return row


def evaluate(model, document: str, questions: list[dict], modes: list[str], *, search_top: int = 6,
             context_chars: int = 200, max_new_tokens: int = 48, progress: Callable[[], None] | None = None,
             on_record: Callable[[dict], None] | None = None, source: str = SOURCE, pages: list[int] | None = None,
             page_labels: list[str] | None = None, conversation: bool = False,
             searches: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """-> (one row per mode, one record per question with every mode's output and scores). ``on_record`` is
    called with each question's record as soon as it is complete. ``source``: the name the document is read
    into memory under (as the app reads it, under the file's name). ``pages``/``page_labels``: where the
    document's pages start and their printed labels (a PDF). ``conversation``: each mode is also run with the
    questions asked one after another in one conversation (rows ``<mode>@conversation``). ``searches``: each mode
    that reads back is also run reading back from each of these searches (``search.SEARCHES``) in place of its own
    (rows ``<mode>[<search>]``)."""
    bank = None
    if any(m != BM25_MODE for m in modes):
        chunk = model.cfg.chunk_size
        tokens = len(model.tokenizer(document, add_special_tokens=False)["input_ids"])
        bank = model.new_bank(capacity=max(model.cfg.capacity, -(-(tokens + 64) // chunk) * chunk))
        model.memorize(document, bank, source=source, pages=pages, page_labels=page_labels)
    bm25 = BM25(passage_units(document, 2 * context_chars + CHUNK_CHARS)) if BM25_MODE in modes else None
    talks = {m: Conversation() for m in modes if conversation and m != BM25_MODE}
    swapped = [(m, s) for m in modes if m != BM25_MODE and answers.MODE_SPECS[m].read_back
               for s in searches if s != answers.MODE_SPECS[m].read_back] if searches else []
    runs = list(modes) + [f"{m}[{s}]" for m, s in swapped] + [m + CONVERSATION for m in talks]
    records = []
    for q in questions:
        record = {"question": q["question"], "answers": q["answers"], "modes": {}}
        for mode in modes:
            if mode == BM25_MODE:
                found = "\n".join(u.text for u in bm25.search(q["question"], search_top))
                record["modes"][mode] = {"correct": None, "retrieved": contains_any(found, q["answers"])}
                continue
            ans = answers.answer(model, bank, q["question"], mode=mode, max_new_tokens=max_new_tokens, search_top=search_top)
            record["modes"][mode] = score(ans, q, document, context_chars, source, pages)
        for mode, with_search in swapped:
            ans = answers.answer(model, bank, q["question"], mode=mode, max_new_tokens=max_new_tokens, search_top=search_top,
                                 search_with=with_search)
            record["modes"][f"{mode}[{with_search}]"] = score(ans, q, document, context_chars, source, pages)
        for mode, talk in talks.items():
            ans = talk.ask(model, bank, q["question"], mode=mode, max_new_tokens=max_new_tokens, search_top=search_top)
            record["modes"][mode + CONVERSATION] = score(ans, q, document, context_chars, source, pages)
        records.append(record)
        if on_record:
            on_record(record)
        if progress:
            progress()
    rows = [summary(run, [r["modes"][run] for r in records]) for run in runs]
    return rows, records


def command_line(args: argparse.Namespace, modes: list[str]) -> str:
    parts = ["python -m longmem_core eval-qa", f"--text {args.text}", f"--questions {args.questions}"]
    if args.max_chars:
        parts.append(f"--max-chars {args.max_chars}")
    parts += [f"--modes {','.join(modes)}", f"--search-top {args.search_top}", f"--context-chars {args.context_chars}",
              f"--max-new-tokens {args.max_new_tokens}"]
    if args.limit:
        parts.append(f"--limit {args.limit}")
    if getattr(args, "searches", ""):
        parts.append(f"--searches {args.searches}")
    if getattr(args, "conversation", False):
        parts.append("--conversation")
    return " ".join(parts + model_flags(args))


def run(args: argparse.Namespace, load_model: Callable[[], object]) -> dict:
    """The ``eval-qa`` command: checks its inputs, then loads the model (``load_model()``) and evaluates.
    Bad input raises ValueError (or the reader's DocumentError) before the model is loaded."""
    from tqdm import tqdm

    from ..documents.data import read_document
    modes = parse_modes(args.modes)
    if args.search_top < 1 or args.context_chars < 0 or (args.max_chars is not None and args.max_chars < 1):
        raise ValueError("--search-top and --max-chars must be positive, --context-chars not negative")
    searches = tuple(s.strip() for s in getattr(args, "searches", "").split(",") if s.strip())
    unknown = [s for s in searches if s not in search.SEARCHES]
    if unknown:
        raise ValueError(f"--searches: unknown search {unknown[0]!r}; choose from {', '.join(search.SEARCHES)}")
    questions = read_questions(args.questions)[:args.limit]
    doc = read_document(args.text)
    part = first_part(doc, args.max_chars or len(doc.text))  # the pages that start within what is read
    document, pages, labels = part.text, part.pages, part.page_labels
    model = load_model()
    t0 = time.perf_counter()
    bar = tqdm(total=len(questions), desc="eval-qa", unit="question", file=sys.stderr)
    records_out = Path(args.records_out) if getattr(args, "records_out", None) else None

    def on_record(record: dict) -> None:
        with records_out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    try:
        rows, records = evaluate(model, document, questions, modes, search_top=args.search_top, context_chars=args.context_chars,
                                 max_new_tokens=args.max_new_tokens, progress=bar.update,
                                 on_record=on_record if records_out else None, source=doc.name, pages=pages,
                                 page_labels=labels, conversation=getattr(args, "conversation", False),
                                 searches=searches)
    finally:
        bar.close()
    result = {"evaluation": "qa", "command": command_line(args, modes), "text": Path(args.text).name,
              "questions_file": Path(args.questions).name, "chars": len(document), "backbone": model.cfg.backbone,
              "checkpoint": model.checkpoint_path, "default_mode": answers.DEFAULT_MODE, "modes": modes,
              "search_top": args.search_top, "context_chars": args.context_chars, "seconds": round(time.perf_counter() - t0, 1),
              "rows": rows, "questions": records}
    if not getattr(args, "json", False):
        for r in rows:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
            extra = ""
            if r.get("answered_when_held") is not None:
                extra += f"  answered_when_held {r['answered_when_held']:.2f}  incomplete {r['incomplete']}"
            if "page_holds_answer" in r:
                extra += f"  page_holds_answer {r['page_holds_answer']:.2f}"
            print(f"{r['mode']:<14} accuracy {acc:>5}  retrieval_recall {r['retrieval_recall']:.2f}{extra}  (n={r['n']})")
        print(f"default mode: {result['default_mode']}")
    return result
