"""The memory commands: ``memorize`` (files into a bank), ``ask`` (an answer in an answer mode, with the chunks it
used) and ``retrieve`` (the chunks the memory search finds)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..limits import MAX_FILE_BYTES, check_text
from ..options import CliError, add_common, number
from .common import MAX_NEW_TOKENS, MAX_TOP, answer_modes, default_mode, load_bank, load_model, progress, search_top


def register(sub) -> None:
    """Add memorize, ask and retrieve to the subcommands ``sub``."""
    p = sub.add_parser("memorize", help="read files (.txt, .md, .pdf) into a memory bank")
    p.add_argument("files", nargs="+")
    p.add_argument("--bank", required=True, help="memory bank directory (created, or extended if it exists)")
    p.add_argument("--capacity", type=number(1, 1 << 40, integer=True), default=None,
                   help="bank size in tokens (new banks only; default 1,048,576: storage grows as the bank fills)")
    p.add_argument("--drop-oldest", action="store_true",
                   help="where the files do not fit, drop the bank's oldest chunks first in, first out (without it "
                        "nothing is read, and the error says what would be dropped)")
    p.add_argument("--chunk-size", type=number(1, 1024, integer=True), default=None,
                   help="tokens per chunk (new banks only)")
    add_common(p)

    p = sub.add_parser("ask", help="answer a question with the memory bank, streaming, and show what was retrieved")
    p.add_argument("question")
    p.add_argument("--bank", required=True)
    p.add_argument("--max-new-tokens", type=number(1, MAX_NEW_TOKENS, integer=True), default=128)
    p.add_argument("--temperature", type=number(0, 100), default=0.0)
    p.add_argument("--search-top", type=number(1, MAX_TOP, integer=True), default=search_top(),
                   help="chunks searched and read back, and listed (fusion: those the memory layer attended to most; "
                        "default: %(default)s, as the app)")
    p.add_argument("--mode", default=default_mode(), help="answer mode: " + ", ".join(answer_modes()) +
                   f" (default: {default_mode()}; see longmem_core/answer/answer.py)")
    add_common(p)

    p = sub.add_parser("retrieve", help="the chunks the memory layer's queries over QUERY attend to most")
    p.add_argument("query")
    p.add_argument("--bank", required=True)
    p.add_argument("--search-top", "--top", type=number(1, MAX_TOP, integer=True), default=5,
                   help="chunks the search finds and lists (--top: the same, its earlier name)")
    add_common(p)

    for name, cmd in (("memorize", cmd_memorize), ("ask", cmd_ask), ("retrieve", cmd_retrieve)):
        sub.choices[name].set_defaults(run=cmd)


def cmd_memorize(args) -> dict:
    from ..documents.data import DocumentError, read_document
    from ..documents.reading_plan import GROWN_CAPACITY, plan_reading
    docs = []
    _check_bank_path(args.bank)  # before reading anything: a file there, or a folder of other files
    for f in args.files:  # read everything first: a bad file stops the run before the bank changes
        try:
            docs.append(read_document(f, max_bytes=MAX_FILE_BYTES))
        except DocumentError as exc:
            raise CliError(str(exc)) from exc
    model = load_model(args)
    bank = load_bank(model, args.bank, must_exist=False)
    if bank is None:
        bank = model.new_bank(capacity=args.capacity or GROWN_CAPACITY, chunk_size=args.chunk_size)
    plan = plan_reading(model, bank, docs)
    if plan.over and not args.drop_oldest:
        raise CliError(f"{sum(plan.tokens):,} tokens do not fit in the bank ({len(bank):,} of {bank.capacity:,} "
                       f"tokens): reading them would drop " + "; ".join(d.describe() for d in plan.drops)
                       + " (first in, first out); nothing was read. Pass --drop-oldest to drop them, or read into a "
                         "new --bank (its --capacity up to 16,777,216 tokens)")
    bank.reserve(sum(plan.chunks) * bank.chunk_size)  # allocated once at its size, not by doubling
    t0 = time.perf_counter()
    tokens = chunks = 0
    for doc in docs:
        bar = progress(not args.json or sys.stderr.isatty(), doc.name)
        stats = model.memorize(doc.text, bank, source=doc.name, progress=bar, pages=doc.pages,
                                 page_labels=doc.page_labels)
        if bar:
            bar.close()
        tokens, chunks = tokens + stats.tokens, chunks + stats.chunks
        if not args.json:
            print(f"{doc.name}: {stats.tokens} tokens, {stats.chunks} chunks, {stats.seconds:.1f} s "
                  f"({stats.tokens / max(stats.seconds, 1e-9):.0f} tokens/s)")
    bank.save(args.bank)
    seconds = time.perf_counter() - t0
    result = {"tokens": tokens, "chunks": chunks, "seconds": round(seconds, 3), "bank": str(args.bank),
              "bank_tokens": len(bank), "bank_chunks": bank.n_chunks, "capacity": bank.capacity,
              "dropped": [d.to_dict() for d in plan.drops]}
    if plan.drops and not args.json:
        print("dropped, first in, first out: " + "; ".join(d.describe() for d in plan.drops))
    if not args.json:
        print(f"memory bank {args.bank}: {len(bank)} tokens in {bank.n_chunks} chunks "
              f"({100 * bank.stats()['used']:.1f}% of {bank.capacity}); {seconds:.1f} s in all")
    return result


def _check_bank_path(path: str) -> None:
    """CliError unless ``path`` can hold a memory bank: nothing there yet, an empty folder, or a bank (saving
    replaces the folder at ``path`` whole, so a folder of other files is never written over)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"--bank {path}: a file is there, not a memory bank folder; choose a new folder name")
    if p.is_dir() and not (p / "meta.json").exists() and any(p.iterdir()):
        raise CliError(f"--bank {path}: a folder of other files, not a memory bank; choose a new or empty folder")


def _print_retrieved(items) -> None:
    for r in items:
        d = r.to_dict()
        text = " ".join(d["text"].split())
        page = f" page {d['page']}" if d.get("page") else ""
        print(f"  [{d['chunk_id']}] {d['source']}{page} chars {d['char_start']}-{d['char_end']}  "
              f"score {d['score']:.3f}  {text!r}")


def cmd_ask(args) -> dict:
    if not args.question.strip():
        raise CliError("the question is empty")
    check_text(args.question, "question")
    if args.mode not in answer_modes():
        raise CliError(f"unknown --mode {args.mode!r}; choose one of {', '.join(answer_modes())}")
    return _ask_in_mode(args)


def _ask_in_mode(args) -> dict:
    """``ask --mode``: the answer through answer.prepare/stream, and the chunks it read back or attended to."""
    from ..answer import answer
    model = load_model(args)
    bank = load_bank(model, args.bank)
    prepared = answer.prepare(model, bank, args.question, args.mode, search_top=args.search_top)
    gen = answer.stream(model, prepared, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    answering = answer.Answering(model, prepared, gen)
    if not args.json:
        print(answering.text, end="", flush=True)
    for piece in answering:
        if not args.json:
            print(piece, end="", flush=True)
    text, cited = answering.finish()
    if not args.json and cited is not None and answering.short:  # quote mode: the sentence the span was copied from
        print(f"\n\n  \u201c{cited.text}\u201d\n  \u2014 {cited.citation()}", end="")
    elif not args.json and cited is not None:  # quote mode, the sentence itself the answer: where it is
        print(f"\n  \u2014 {cited.citation()}", end="")
    spec = answer.MODE_SPECS[args.mode]
    chunks = spec.used_chunks(model, prepared, gen, args.search_top)  # fusion: what it attended to most
    if not args.json:
        share = (f" (memory share of the memory layer's output: {gen.memory_share:.2f})"
                 if spec.fusion else "")  # no memory layer runs in the other modes
        print(f"\n\n{args.mode}: {'read back' if prepared.context else 'retrieved'}{share}:")
        _print_retrieved(chunks)
    return {"answer": text, "quote": cited.to_dict() if cited else None, "short": answering.short,
            "mode": args.mode, "retrieved": [r.to_dict() for r in chunks], "context": prepared.context,
            "memory_share": round(gen.memory_share, 4)}


def cmd_retrieve(args) -> dict:
    if not args.query.strip():
        raise CliError("the query is empty")
    check_text(args.query, "question")
    model = load_model(args)
    bank = load_bank(model, args.bank)
    retrieved = model.retrieve(args.query, bank, args.search_top)
    if not args.json:
        _print_retrieved(retrieved)
    return {"retrieved": [r.to_dict() for r in retrieved]}
