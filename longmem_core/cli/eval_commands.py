"""The measuring commands: ``eval-ppl``, ``eval-passkey``, ``eval-icl``, ``eval-chapterbreak``, ``eval-niah``,
``eval-paraphrase``, ``eval-qa`` (the evaluations, ``longmem_core/evals/``) and ``bench`` (the runtime's timings)."""
from __future__ import annotations

import json
from pathlib import Path

from ..limits import MAX_FILE_BYTES, check_rows
from ..options import CliError, add_common, number
from ..paths import DEFAULT_BOOK
from .common import answer_modes, default_mode, load_model, progress


def register(sub) -> None:
    """Add the eval-* commands and bench to the subcommands ``sub``."""
    p = sub.add_parser("eval-ppl", help="perplexity: local-only backbone vs LongMem untrained vs trained")
    p.add_argument("files", nargs="+")
    p.add_argument("--max-tokens", type=number(1, 1 << 40, integer=True), default=None,
                   help="tokens read per book (default: all)")
    p.add_argument("--cache", action="store_true", help="also LongMem and the backbone alone each mixed with a "
                                                        "neural cache of the previous segments "
                                                        "(longmem_core/evals/ppl_cache.py)")
    p.add_argument("--cache-lam", default=None, help="cache weight(s), comma-separated (each --cache-* option takes "
                                                     "a list: every combination is scored under cache_grid, the first "
                                                     "of each is reported; defaults: evals/settings.py's "
                                                     "PERPLEXITY_CACHE)")
    p.add_argument("--cache-theta", default=None, help="cache sharpness(es), comma-separated")
    p.add_argument("--cache-dim", default=None, help="projected key width(s) of the cache, comma-separated")
    p.add_argument("--cache-gate", default=None, help="off, on or off,on: the cache weight scaled by the cache's "
                                                      "confidence at each token")
    p.add_argument("--cache-layer", default=None, help="the backbone hidden state the cache is keyed on: an index "
                                                       "into its L + 1 hidden states (negative: from the end) or "
                                                       "'final' (the normed last state); default: "
                                                       "evals/settings.py's PERPLEXITY_CACHE.layer")
    p.add_argument("--adapt", action="store_true", help="also LongMem adapted at test time (beyond the paper, "
                                                        "longmem_core/evals/ppl_adapt.py): its memory branch keeps "
                                                        "training on each segment once scored")
    p.add_argument("--adapt-lr", type=float, default=None,
                   help="its learning rate (default: evals/settings.py's ADAPT.lr)")
    p.add_argument("--adapt-share", type=float, default=None, help="the trained memory share times this, before "
                                                                   "adapting (default: evals/settings.py's "
                                                                   "ADAPT.memory_share)")
    add_common(p)

    p = sub.add_parser("eval-passkey", help="pass key hidden in long real text: LongMem vs local context only")
    p.add_argument("--lengths", default="4000,16000,64000", help="comma-separated document lengths in tokens")
    p.add_argument("--trials", type=number(1, 10_000, integer=True), default=5)
    p.add_argument("--text", default=str(DEFAULT_BOOK),
                   help="real text to hide the key in (a book)")
    p.add_argument("--seed", type=number(0, 2 ** 32 - 1, integer=True), default=0)
    p.add_argument("--mode", default=default_mode(),
                   help="how LongMem answers: an answer mode (" + ", ".join(answer_modes()) + ") asked through the "
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

    from ..evals import eval_niah, eval_paraphrase, eval_qa  # needles, facts asked in other words, factual questions
    for name, module, text in (("eval-niah", eval_niah, "needles in a haystack (RULER tasks): every answer mode + BM25"),
                               ("eval-paraphrase", eval_paraphrase, "facts asked in other words (NoLiMa-style): "
                                "what the answer mode's search, the memory's alone and BM25 alone find"),
                               ("eval-qa", eval_qa, "factual questions about a document: every answer mode + BM25")):
        p = sub.add_parser(name, help=text)
        module.add_arguments(p)
        add_common(p)

    p = sub.add_parser("bench", help="measure speed figures against baselines measured in the same run")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    p.add_argument("--out", metavar="FILE.json", help="also write the figures, with this command and the date, to FILE")
    p.add_argument("--plot", metavar="FILE.svg", help="also draw retrieval time and RAM against bank size")
    p.add_argument("--device", default=None, help="cpu (default), cuda or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    for name, cmd in EVAL_COMMANDS.items():
        sub.choices[name].set_defaults(run=cmd)


def cmd_eval_ppl(args) -> dict:
    from ..evals.evaluate import eval_ppl
    from ..model.model import LongMemModel
    for f in args.files:
        if not Path(f).is_file():
            raise CliError(f"{f}: no such file")
    trained = load_model(args)
    untrained = LongMemModel(trained.cfg, backbone=trained.backbone).to(trained.device)  # same backbone, fresh SideNet
    grid, adapt = _cache_grid(args), _adaptation(args)
    if grid is not None:  # the key layer is checked against this backbone's depth before any book is read
        from ..evals.ppl_cache import check_key_layer
        try:
            check_key_layer(trained, grid.layer)
        except ValueError as exc:
            raise CliError(f"--cache-layer: {exc}") from exc
    result = eval_ppl(args.files, trained, untrained, args.max_tokens,
                      progress_factory=lambda name: progress(True, name), cache=grid, adapt=adapt)
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
    from ..evals.ppl_cache import CacheGrid
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
    from ..evals.ppl_adapt import Adaptation
    given = {"lr": args.adapt_lr, "memory_share": args.adapt_share}
    try:
        return Adaptation(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise CliError(f"--adapt: {exc}") from exc


def cmd_eval_passkey(args) -> dict:
    from ..documents.data import DocumentError, read_document
    from ..evals.evaluate import eval_passkey
    try:
        lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
        text = read_document(args.text).text
    except (ValueError, DocumentError) as exc:
        raise CliError(str(exc)) from exc
    model = load_model(args)
    bar = progress(True, "pass key")
    try:
        if args.mode != "paper" and args.mode not in answer_modes():
            raise ValueError(f"unknown --mode {args.mode!r}; choose paper or one of {', '.join(answer_modes())}")
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

    from ..classify import icl, icl_modes
    from ..documents.data import DocumentError, read_labelled
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
    model = load_model(args)
    per_seed = {}
    for seed in seeds:
        reading = progress(True, f"{task} seed {seed}: reading demonstrations")
        scoring = progress(True, f"{task} seed {seed}: test texts")
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
    from ..evals.evaluate import chapterbreak_examples, eval_chapterbreak
    try:
        examples = chapterbreak_examples(args.file)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise CliError(f"{args.file}: not a ChapterBreak-layout JSON file ({exc})") from exc
    model = load_model(args)
    result = eval_chapterbreak(model, examples, args.limit, progress=progress(True, "chapterbreak"))
    if not args.json:
        print(f"{result['n']} examples: LongMem {result['acc_longmem']:.3f}  local only {result['acc_local']:.3f}  "
              f"(chance {result['chance']:.3f})")
    return result


def cmd_bench(args) -> dict:
    from ..bench.bench import run
    result = run(quick=args.quick, plot=args.plot, device=args.device, out=args.out)
    if not args.json:
        print(json.dumps(result, indent=2))
    return result


def cmd_eval_suite(args) -> dict:
    from ..evals import eval_niah, eval_paraphrase, eval_qa
    try:
        return {"eval-niah": eval_niah, "eval-paraphrase": eval_paraphrase,
                "eval-qa": eval_qa}[args.command].run(args, lambda: load_model(args))
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


EVAL_COMMANDS = {"eval-ppl": cmd_eval_ppl, "eval-passkey": cmd_eval_passkey, "eval-icl": cmd_eval_icl,
                 "eval-chapterbreak": cmd_eval_chapterbreak, "eval-niah": cmd_eval_suite,
                 "eval-paraphrase": cmd_eval_suite, "eval-qa": cmd_eval_suite, "bench": cmd_bench}
