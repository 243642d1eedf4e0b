"""Command line: python -m longmem_core {memorize, ask, retrieve, train, eval-*, bench, ...} ... (--json for scripted use).

The core commands are defined here; other command modules (``command_modules``) add theirs with ``register(sub)``
(see ``options.py``), each subcommand setting ``run``: parsed args -> a JSON-able dict."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import default_checkpoint
from .documents.data import DocumentError
from .memory.memory_bank import BankMismatchError
from .limits import MAX_FILE_BYTES, InputError, check_rows, check_text
from .options import CliError, Parser, add_common, number
from .paths import DEFAULT_BOOK

MAX_TOP = 100  # chunks a command lists at most
MAX_NEW_TOKENS = 8191  # generation.MAX_CONTEXT - 1: more would cut the prompt to nothing


def command_modules() -> list:
    """The modules whose ``register(sub)`` adds subcommands after the core ones (memorize, ask, retrieve, eval-*,
    bench). A new command module adds itself here."""
    from .training import commands as training
    return [training]


def build_parser() -> argparse.ArgumentParser:
    prog = "longmem" if Path(sys.argv[0]).name == "longmem" else "python -m longmem_core"  # pyproject's command
    parser = Parser(prog=prog,
                                     description="LongMem: read documents into a memory bank, then ask and retrieve.")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--search-top", type=number(1, MAX_TOP, integer=True), default=_search_top(),
                   help="chunks searched and read back, and listed (fusion: those the memory layer attended to most; "
                        "default: %(default)s, as the app)")
    p.add_argument("--mode", default=_default_mode(), help="answer mode: " + ", ".join(_answer_modes()) +
                   f" (default: {_default_mode()}; see longmem_core/answer/answer.py)")
    add_common(p)

    p = sub.add_parser("retrieve", help="the chunks the memory layer's queries over QUERY attend to most")
    p.add_argument("query")
    p.add_argument("--bank", required=True)
    p.add_argument("--search-top", "--top", type=number(1, MAX_TOP, integer=True), default=5,
                   help="chunks the search finds and lists (--top: the same, its earlier name)")
    add_common(p)

    p = sub.add_parser("eval-ppl", help="perplexity: local-only backbone vs LongMem untrained vs trained")
    p.add_argument("files", nargs="+")
    p.add_argument("--max-tokens", type=number(1, 1 << 40, integer=True), default=None,
                   help="tokens read per book (default: all)")
    p.add_argument("--cache", action="store_true", help="also LongMem and the backbone alone each mixed with a "
                                                        "neural cache of the previous segments "
                                                        "(longmem_core/evals/ppl_cache.py)")
    p.add_argument("--cache-lam", default=None, help="cache weight(s), comma-separated (each --cache-* option takes "
                                                     "a list: every combination is scored under cache_grid, the first "
                                                     "of each is reported; defaults: ppl_cache's chosen setting)")
    p.add_argument("--cache-theta", default=None, help="cache sharpness(es), comma-separated")
    p.add_argument("--cache-dim", default=None, help="projected key width(s) of the cache, comma-separated")
    p.add_argument("--cache-gate", default=None, help="off, on or off,on: the cache weight scaled by the cache's "
                                                      "confidence at each token")
    p.add_argument("--cache-layer", default=None, help="the backbone hidden state the cache is keyed on: an index "
                                                       "into its L + 1 hidden states (negative: from the end) or "
                                                       "'final' (the normed last state); default ppl_cache.LAYER_MIX")
    p.add_argument("--adapt", action="store_true", help="also LongMem adapted at test time (beyond the paper, "
                                                        "longmem_core/evals/ppl_adapt.py): its memory branch keeps "
                                                        "training on each segment once scored")
    p.add_argument("--adapt-lr", type=float, default=None, help="its learning rate (default ppl_adapt.LR)")
    p.add_argument("--adapt-share", type=float, default=None, help="the trained memory share times this, before "
                                                                   "adapting (default ppl_adapt.MEMORY_SHARE)")
    add_common(p)

    p = sub.add_parser("eval-passkey", help="pass key hidden in long real text: LongMem vs local context only")
    p.add_argument("--lengths", default="4000,16000,64000", help="comma-separated document lengths in tokens")
    p.add_argument("--trials", type=number(1, 10_000, integer=True), default=5)
    p.add_argument("--text", default=str(DEFAULT_BOOK),
                   help="real text to hide the key in (a book)")
    p.add_argument("--seed", type=number(0, 2 ** 32 - 1, integer=True), default=0)
    p.add_argument("--mode", default=_default_mode(),
                   help="how LongMem answers: an answer mode (" + ", ".join(_answer_modes()) + ") asked through the "
                        "chat template, or 'paper': the memory layer continuing the raw text (default: %(default)s)")
    add_common(p)

    p = sub.add_parser("eval-icl", help="few-shot classification: every ICL mode (in context, memory, k-NN vote, ...) "
                                         "over the same demonstrations")
    p.add_argument("--train", required=True, help="demonstrations (.jsonl/.csv/.tsv with text and label)")
    p.add_argument("--test", required=True, help="labelled test set")
    p.add_argument("--task", default=None, help="task name for the template (sst2, sst5, mr, subj, mpqa, cr)")
    p.add_argument("--memory-size", type=number(1, 1_000_000, integer=True), default=2000,
                   help="demonstrations read into memory (paper: 2,000)")
    p.add_argument("--k", type=number(0, 1000, integer=True), default=20, help="demonstrations in context (paper: 20)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds; mean and std are reported")
    p.add_argument("--modes", default=None, help="comma-separated classification modes (default: all of "
                                                 "longmem_core/classify/icl_modes.py's MODES)")
    p.add_argument("--limit", type=int, default=None,
                   help="test examples used: a random sample (seed 0, the same for every seed and system; test files "
                        "are often sorted by label, so the first N would be one class); default: all")
    add_common(p)

    p = sub.add_parser("eval-chapterbreak", help="suffix identification (ChapterBreak layout): LongMem vs local only")
    p.add_argument("file")
    p.add_argument("--limit", type=int, default=None,
                   help="examples used: a random sample (seed 0) in file order (the file is grouped by book, so the "
                        "first N would be few books); default: all")
    add_common(p)

    from .evals import eval_niah, eval_paraphrase, eval_qa  # needles, facts asked in other words, factual questions
    for name, module, text in (("eval-niah", eval_niah, "needles in a haystack (RULER tasks): every answer mode + BM25"),
                               ("eval-paraphrase", eval_paraphrase, "facts asked in other words (NoLiMa-style): "
                                "what the answer mode's search, the memory's alone and BM25 alone find"),
                               ("eval-qa", eval_qa, "factual questions about a document: every answer mode + BM25")):
        p = sub.add_parser(name, help=text)
        module.add_arguments(p)
        add_common(p)

    p = sub.add_parser("bench", help="measure speed figures against baselines measured in the same run")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    p.add_argument("--plot", metavar="FILE.svg", help="also draw retrieval time and RAM against bank size")
    p.add_argument("--device", default=None, help="cpu (default), cuda or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    for name, cmd in CORE_COMMANDS.items():
        sub.choices[name].set_defaults(run=cmd)
    for module in command_modules():
        module.register(sub)
    return parser


def _load_model(args):
    from .model.model import LongMemModel
    checkpoint = args.checkpoint
    if not checkpoint and default_checkpoint():  # the default checkpoint applies only to its own backbone
        from .model.model import read_checkpoint_meta
        shipped = default_checkpoint()
        if args.backbone in (None, read_checkpoint_meta(shipped)["config"]["backbone"]):
            checkpoint = shipped
    if checkpoint and not Path(checkpoint).is_file():
        raise CliError(f"checkpoint {checkpoint} not found")
    try:
        return LongMemModel.load(backbone=args.backbone, checkpoint=checkpoint, device=getattr(args, 'device', None))
    except (ValueError, OSError, RuntimeError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def _load_bank(model, path: str, must_exist: bool = True):
    from .memory.memory_bank import MemoryBank
    p = Path(path)
    if not (p / "meta.json").exists():
        if must_exist:
            raise CliError(f"{path}: no memory bank here; create one with: python -m longmem_core memorize FILE --bank {path}")
        return None
    try:
        bank = MemoryBank.load(p, device=model.device)
        model.check_bank(bank)
    except (ValueError, OSError, KeyError) as exc:
        raise CliError(f"{path}: {str(exc).splitlines()[0]}") from exc
    return bank


def _progress(enabled: bool, label: str):
    if not enabled:
        return None
    from tqdm import tqdm
    bar = tqdm(total=0, unit="tok", desc=label, file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    update.close = bar.close  # type: ignore[attr-defined]
    return update


def cmd_memorize(args) -> dict:
    from .documents.data import DocumentError, read_document
    from .documents.reading_plan import GROWN_CAPACITY, plan_reading
    docs = []
    _check_bank_path(args.bank)  # before reading anything: a file there, or a folder of other files
    for f in args.files:  # read everything first: a bad file stops the run before the bank changes
        try:
            docs.append(read_document(f, max_bytes=MAX_FILE_BYTES))
        except DocumentError as exc:
            raise CliError(str(exc)) from exc
    model = _load_model(args)
    bank = _load_bank(model, args.bank, must_exist=False)
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
        bar = _progress(not args.json or sys.stderr.isatty(), doc.name)
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


def _answer_modes() -> tuple[str, ...]:
    from .answer.answer import MODES
    return MODES


def _default_mode() -> str:
    from .answer.answer import DEFAULT_MODE
    return DEFAULT_MODE


def _search_top() -> int:
    from .answer.answer import SEARCH_TOP
    return SEARCH_TOP


def cmd_ask(args) -> dict:
    if not args.question.strip():
        raise CliError("the question is empty")
    check_text(args.question, "question")
    if args.mode not in _answer_modes():
        raise CliError(f"unknown --mode {args.mode!r}; choose one of {', '.join(_answer_modes())}")
    return _ask_in_mode(args)


def _ask_in_mode(args) -> dict:
    """``ask --mode``: the answer through answer.prepare/stream, and the chunks it read back or attended to."""
    from .answer import answer
    model = _load_model(args)
    bank = _load_bank(model, args.bank)
    prepared = answer.prepare(model, bank, args.question, args.mode, search_top=args.search_top)
    gen = answer.stream(model, prepared, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    answering = answer.Answering(model, prepared, gen)
    if not args.json:
        print(answering.text, end="", flush=True)
    for piece in answering:
        if not args.json:
            print(piece, end="", flush=True)
    text, cited = answering.finish()
    if not args.json and cited is not None:  # the quote mode: the sentence the answer was copied from
        print(f"\n\n  \u201c{cited.text}\u201d\n  \u2014 {cited.citation()}", end="")
    spec = answer.MODE_SPECS[args.mode]
    chunks = spec.used_chunks(model, prepared, gen, args.search_top)  # fusion: what it attended to most
    if not args.json:
        share = (f" (memory share of the memory layer's output: {gen.memory_share:.2f})"
                 if spec.fusion else "")  # no memory layer runs in the other modes
        print(f"\n\n{args.mode}: {'read back' if prepared.context else 'retrieved'}{share}:")
        _print_retrieved(chunks)
    return {"answer": text, "quote": cited.to_dict() if cited else None,
            "mode": args.mode, "retrieved": [r.to_dict() for r in chunks], "context": prepared.context,
            "memory_share": round(gen.memory_share, 4)}


def cmd_retrieve(args) -> dict:
    if not args.query.strip():
        raise CliError("the query is empty")
    check_text(args.query, "question")
    model = _load_model(args)
    bank = _load_bank(model, args.bank)
    retrieved = model.retrieve(args.query, bank, top=args.search_top)
    if not args.json:
        _print_retrieved(retrieved)
    return {"retrieved": [r.to_dict() for r in retrieved]}


def cmd_eval_ppl(args) -> dict:
    from .evals.evaluate import eval_ppl
    from .model.model import LongMemModel
    for f in args.files:
        if not Path(f).is_file():
            raise CliError(f"{f}: no such file")
    trained = _load_model(args)
    untrained = LongMemModel(trained.cfg, backbone=trained.backbone).to(trained.device)  # same backbone, fresh SideNet
    grid, adapt = _cache_grid(args), _adaptation(args)
    if grid is not None:  # the key layer is checked against this backbone's depth before any book is read
        from .evals.ppl_cache import check_key_layer
        try:
            check_key_layer(trained, grid.layer)
        except ValueError as exc:
            raise CliError(f"--cache-layer: {exc}") from exc
    result = eval_ppl(args.files, trained, untrained, args.max_tokens,
                      progress_factory=lambda name: _progress(True, name), cache=grid, adapt=adapt)
    if not args.json:
        for name, r in result["books"].items():
            print(f"{name}: {r['tokens']} tokens  local {r['ppl_local']:.2f}  untrained {r['ppl_untrained']:.2f}  "
                  f"longmem {r['ppl_longmem']:.2f}  (longmem, memory kept empty {r['ppl_longmem_empty_memory']:.2f})")
        def ppl(key: str) -> str:  # "24.66 (-2.0%)": against the local-only backbone of the same run
            return f"{result[key]:.2f} ({100 * (result[key] / result['ppl_local'] - 1):+.1f}%)"
        print(f"all: local {result['ppl_local']:.2f}  untrained {ppl('ppl_untrained')}  longmem {ppl('ppl_longmem')}")
        if "ppl_longmem_adapted" in result:
            print(f"adapted at test time (beyond the paper): longmem {ppl('ppl_longmem_adapted')}")
        if "ppl_longmem_cache" in result:
            print(f"with the cache (beyond the paper): local {ppl('ppl_local_cache')}  longmem {ppl('ppl_longmem_cache')}"
                  + (f"  adapted {ppl('ppl_longmem_adapted_cache')}" if "ppl_longmem_adapted_cache" in result else ""))
    return result


def _cache_grid(args):
    """eval-ppl's cache options -> a ppl_cache.CacheGrid, or None without --cache."""
    if not args.cache:
        return None
    from .evals.ppl_cache import CacheGrid
    given = {"lams": (args.cache_lam, float), "thetas": (args.cache_theta, float), "dims": (args.cache_dim, int),
             "gates": (args.cache_gate, {"off": False, "on": True}.__getitem__)}
    try:
        layer = {} if args.cache_layer is None else {
            "layer": None if args.cache_layer.strip() == "final" else int(args.cache_layer)}
        return CacheGrid(**{k: tuple(parse(x.strip()) for x in v.split(",") if x.strip())
                            for k, (v, parse) in given.items() if v}, **layer)
    except (ValueError, KeyError) as exc:
        raise CliError(f"--cache-lam/-theta/-dim/-gate/-layer: {exc}") from exc


def _adaptation(args):
    """eval-ppl's --adapt options -> a ppl_adapt.Adaptation, or None without --adapt."""
    if not args.adapt:
        if args.adapt_lr is not None or args.adapt_share is not None:
            raise CliError("--adapt-lr and --adapt-share need --adapt")
        return None
    from .evals.ppl_adapt import Adaptation
    given = {"lr": args.adapt_lr, "memory_share": args.adapt_share}
    try:
        return Adaptation(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise CliError(f"--adapt: {exc}") from exc


def cmd_eval_passkey(args) -> dict:
    from .documents.data import DocumentError, read_document
    from .evals.evaluate import eval_passkey
    try:
        lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
        text = read_document(args.text).text
    except (ValueError, DocumentError) as exc:
        raise CliError(str(exc)) from exc
    model = _load_model(args)
    bar = _progress(True, "pass key")
    try:
        if args.mode != "paper" and args.mode not in _answer_modes():
            raise ValueError(f"unknown --mode {args.mode!r}; choose paper or one of {', '.join(_answer_modes())}")
        result = eval_passkey(model, text, lengths, args.trials, args.seed, progress=bar,
                              mode=None if args.mode == "paper" else args.mode)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if not args.json:
        for length, r in result["lengths"].items():
            print(f"{length} tokens: LongMem ({result['mode']}) {r['acc_longmem']:.2f}  local only {r['acc_local']:.2f}  "
                  f"({args.trials} trials)")
    return result


def cmd_eval_icl(args) -> dict:
    """Every classification mode on the same test texts and demonstrations, per seed; mean and std per mode, the
    library's default mode named. ``acc_memory``/``acc_incontext``: the paper's two systems, when run."""
    import statistics

    from .classify import icl, icl_modes
    from .documents.data import DocumentError, read_labelled
    try:
        demos = read_labelled(args.train, min_classes=2, max_bytes=MAX_FILE_BYTES)  # the app's rules too
        test = read_labelled(args.test, max_bytes=MAX_FILE_BYTES)
        check_rows(demos, "demonstration", Path(args.train).name)  # limits.py: the app's limits too
        check_rows(test, "text to classify", Path(args.test).name)
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except (DocumentError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    modes = [m.strip() for m in (args.modes or ",".join(icl_modes.MODES)).split(",") if m.strip()]
    unknown = [m for m in modes if m not in icl_modes.MODES]
    if unknown or not modes:
        raise CliError(f"unknown --modes {','.join(unknown)!r}; choose from {', '.join(icl_modes.MODES)}")
    task = args.task or Path(args.train).parent.name
    template = icl.template_for(task)
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be >= 1")
    if args.limit and args.limit < len(test):
        import random
        test = random.Random(0).sample(test, args.limit)
    model = _load_model(args)
    per_seed = {}
    for seed in seeds:
        reading = _progress(True, f"{task} seed {seed}: reading demonstrations")
        scoring = _progress(True, f"{task} seed {seed}: test texts")
        r = icl_modes.evaluate_modes(model, test, demos, modes=modes, k=args.k, seed=seed, template=template,
                                     memory_size=args.memory_size, progress=scoring, memorize_progress=reading)
        for bar in (reading, scoring):
            bar.close()
        per_seed[str(seed)] = {"accuracy": r.accuracy, "macro_f1": r.macro_f1, "memory_tokens": r.memory_tokens,
                               "seconds": r.seconds}
        if r.selection is not None:  # auto's choice; its time against classifying the test set as auto does
            per_seed[str(seed)].update(selection=r.selection, added_time=r.selection["seconds"] / max(
                r.seconds["key"] + r.seconds["context"], 1e-9))
        if "memory" in modes and "context" in modes:  # the keys of the paper's comparison, as before
            per_seed[str(seed)].update(acc_memory=r.accuracy["memory"], acc_incontext=r.accuracy["context"])
        if not args.json:
            print(f"seed {seed}: " + "  ".join(f"{m} {a:.3f}" for m, a in r.accuracy.items()))
            if r.selection is not None:
                print(f"  auto chose {r.selection['chosen']}: {r.selection['reason']}; choosing took "
                      f"{r.selection['seconds']:.1f} s, {100 * per_seed[str(seed)]['added_time']:.0f}% of "
                      "classifying the test set (key + in-context scoring)")
    by_mode = {}
    for m in modes:
        accs = [v["accuracy"][m] for v in per_seed.values()]
        f1s = [v["macro_f1"][m] for v in per_seed.values()]
        by_mode[m] = {"mean": statistics.mean(accs), "std": statistics.pstdev(accs), "seeds": accs,
                      "macro_f1": statistics.mean(f1s)}
    result = {"task": task, "n_test": len(test), "k": args.k, "memory_size": args.memory_size, "modes": modes,
              "default_mode": icl_modes.DEFAULT_MODE, "accuracy": by_mode, "seeds": per_seed}
    if "auto" in modes:
        result["auto"] = {"chosen": {s: v["selection"]["chosen"] for s, v in per_seed.items()},
                          "added_time": statistics.mean(v["added_time"] for v in per_seed.values())}
    if "memory" in modes and "context" in modes:
        result.update(acc_memory=by_mode["memory"]["mean"], acc_memory_std=by_mode["memory"]["std"],
                      acc_incontext=by_mode["context"]["mean"], acc_incontext_std=by_mode["context"]["std"])
    if not args.json:
        for m, a in by_mode.items():
            print(f"{task} {m}{' (default)' if m == icl_modes.DEFAULT_MODE else ''}: {a['mean']:.3f} ± {a['std']:.3f}")
    return result


def cmd_eval_chapterbreak(args) -> dict:
    from .evals.evaluate import chapterbreak_examples, eval_chapterbreak
    try:
        examples = chapterbreak_examples(args.file)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise CliError(f"{args.file}: not a ChapterBreak-layout JSON file ({exc})") from exc
    model = _load_model(args)
    result = eval_chapterbreak(model, examples, args.limit, progress=_progress(True, "chapterbreak"))
    if not args.json:
        print(f"{result['n']} examples: LongMem {result['acc_longmem']:.3f}  local only {result['acc_local']:.3f}  "
              f"(chance {result['chance']:.3f})")
    return result


def cmd_bench(args) -> dict:
    from .bench.bench import run
    result = run(quick=args.quick, plot=args.plot, device=args.device)
    if not args.json:
        print(json.dumps(result, indent=2))
    return result


def cmd_eval_suite(args) -> dict:
    from .evals import eval_niah, eval_paraphrase, eval_qa
    try:
        return {"eval-niah": eval_niah, "eval-paraphrase": eval_paraphrase,
                "eval-qa": eval_qa}[args.command].run(args, lambda: _load_model(args))
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


CORE_COMMANDS = {"memorize": cmd_memorize, "ask": cmd_ask, "retrieve": cmd_retrieve, "eval-ppl": cmd_eval_ppl,
                 "eval-passkey": cmd_eval_passkey, "eval-icl": cmd_eval_icl, "eval-chapterbreak": cmd_eval_chapterbreak,
                 "eval-niah": cmd_eval_suite, "eval-paraphrase": cmd_eval_suite, "eval-qa": cmd_eval_suite,
                 "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    as_json = getattr(args, "json", False) or getattr(args, "always_json", False)
    if as_json:  # keep stdout a single JSON object: library chatter goes to stderr
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        result = args.run(args)
    except (CliError, InputError) as exc:  # InputError: over a limit of limits.py, the app's message too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DocumentError, BankMismatchError, FileNotFoundError) as exc:  # bad input met deeper down
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    return 0
