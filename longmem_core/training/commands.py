"""The training subcommands: ``train`` (language modelling), ``train-retrieval``, ``train-recall``, ``train-chat``,
``train-meaning``.

Each builds its model and data, runs the one loop (``loop.run``) with its objective, and returns a JSON-able
summary; ``register(sub)`` adds them to the CLI with options generated from their config dataclasses.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import (MEMORY_BRANCHES, ChatTrainConfig, MeaningTrainConfig, RecallTrainConfig, RetrievalTrainConfig,
                      TrainConfig, default_checkpoint, preset)
from ..options import CliError, add_common, add_config_options, config_from_args
from .corpus import text_files
from .loop import RunResult, rank_world, run


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(cfg: TrainConfig, model=None, log=print) -> Path:
    """Language modelling over long documents (or resume it); returns the path of the last checkpoint. Inside an
    initialised ``torch.distributed`` process group, each process is one data-parallel rank."""
    from ..model.model import LongMemModel
    from .objectives.language import LanguageModelling
    model = model or LongMemModel.load()
    _, world = rank_world()
    return run(LanguageModelling(model, cfg, world=world), model, cfg, log=log).checkpoint


def train_retrieval(model, cfg: RetrievalTrainConfig, log=_stderr) -> dict:
    """Retrieval training from books: cached features, examples, the loop, held-out ranks before and after."""
    from .objectives.retrieval import Retrieval, evaluate_ranks, retrieve_eval
    from .search_examples import cached_store, make_examples, read_pair_file
    from .features import BankCache
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    c = model.cfg.chunk_size
    pairs = read_pair_file(cfg.pairs) if cfg.pairs else None
    eval_pairs = read_pair_file(cfg.eval_pairs, split="tuning") if cfg.eval_pairs else None
    store, groups = cached_store(model, cfg.data, out / "train_features.pt", cfg.excerpt_segments,
                                 cfg.facts_per_book, False, cfg.seed, log, pairs=pairs)
    if cfg.book_questions:
        from .search_examples import add_book_questions, cached_book_questions, read_book_questions
        part, entries = cached_book_questions(model, cfg.data, read_book_questions(cfg.book_questions),
                                              out / "book_features.pt", cfg.seed, log)
        add_book_questions(store, groups, part, entries, model.tokenizer, log)
    examples = make_examples(store, groups, c, seed=cfg.seed, distractor_books=cfg.distractor_books,
                             fact_distractors=cfg.fact_distractors)
    log(f"{len(examples)} training examples ({sum(e.kind == 'fact' for e in examples)} facts, "
        f"{sum(e.kind == 'paraphrase' for e in examples)} asked in other words, "
        f"{sum(e.kind == 'book' for e in examples)} about the books' own sentences), "
        f"{sum(len(e.targets) for e in examples)} query tokens with targets")
    report: dict = {"train_config": asdict(cfg)}
    validation = None
    if cfg.eval:
        ev_store, ev_groups = cached_store(model, cfg.eval, out / "eval_features.pt", cfg.eval_excerpt_segments,
                                           cfg.eval_facts_per_book, True, cfg.seed + 1, log, pairs=eval_pairs)
        ev_examples = make_examples(ev_store, ev_groups, c, seed=cfg.seed + 1, distractor_books=0, induction_per_book=4,
                                    fact_distractors=cfg.fact_distractors)
        ev_cache = BankCache(ev_store, c)
        validation = lambda: evaluate_ranks(model, ev_examples, ev_store, c, ev_cache)  # noqa: E731
        report["eval_before"] = validation()
        report["retrieve_before"] = retrieve_eval(model, ev_store, ev_groups)
        log("held-out before: " + json.dumps(report["eval_before"]) +
            f" retrieve hit@10 {report['retrieve_before']['hit@10']:.2f}")
    result = run(Retrieval(model, store, examples, cfg, validation), model, cfg, log=log)
    report["log"] = result.records
    report["train_seconds"] = result.records[-1]["seconds"] if result.records else 0.0
    if cfg.eval:
        report["eval_after"] = validation()
        report["retrieve_after"] = retrieve_eval(model, ev_store, ev_groups)
        log("held-out after: " + json.dumps(report["eval_after"]) +
            f" retrieve hit@10 {report['retrieve_after']['hit@10']:.2f}")
    report["checkpoint"] = str(result.checkpoint)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return {"checkpoint": report["checkpoint"], "train_seconds": report["train_seconds"],
            **{k: report[k] for k in ("eval_before", "eval_after") if k in report},
            **{k: report[k]["hit@10"] for k in ("retrieve_before", "retrieve_after") if k in report}}


def train_recall(model, cfg: RecallTrainConfig, log=_stderr) -> dict:
    """Recall training from a checkpoint: cached excerpts, the loop, held-out recall before and after."""
    from .objectives.recall import Recall, evaluate_recall, make_example, read_excerpts
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    excerpts = read_excerpts(model, cfg.data, cfg.excerpt_segments, cfg.seed, log)
    report: dict = {"train_config": asdict(cfg)}
    eval_examples = None
    if cfg.eval:
        ev = read_excerpts(model, cfg.eval, cfg.excerpt_segments, cfg.seed + 1, log)
        rng = random.Random(cfg.seed + 1)
        eval_examples = [make_example(model, ev[i % len(ev)], rng, cfg, evaluation=True) for i in range(cfg.eval_examples)]
        report["eval_before"] = evaluate_recall(model, eval_examples, cfg.shift_values)
        log("held-out before: " + json.dumps(report["eval_before"]))
    result: RunResult = run(Recall(model, excerpts, cfg, eval_examples), model, cfg, log=log)
    report["log"] = result.records
    report["train_seconds"] = result.records[-1]["seconds"] if result.records else 0.0
    if eval_examples:
        report["eval_after"] = result.validation
    report["checkpoint"] = str(result.checkpoint)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return {k: report[k] for k in ("checkpoint", "train_seconds", "eval_before", "eval_after") if k in report}


def train_chat(model, cfg: ChatTrainConfig, log=_stderr) -> dict:
    """Chat-format training from a checkpoint; held-out answer loss before and after."""
    from .objectives.chat import ChatExamples, read_chat_examples
    objective = ChatExamples(model, read_chat_examples(cfg.data), cfg, read_chat_examples(cfg.val) if cfg.val else None)
    before = objective.validate()
    result = run(objective, model, cfg, log=log)
    return {"checkpoint": str(result.checkpoint), "steps": cfg.steps, "val_before": before, "val_after": result.validation}


def train_meaning(model, cfg: MeaningTrainConfig, log=_stderr) -> dict:
    """The meaning search's maps trained from ``model`` (built with ``meaning_dim``); the checkpoint is written
    with every parameter the loaded one set. Returns the summary written to ``report.json``."""
    import time
    from .meaning import book_question_documents, fit, pair_documents, ranks, read_book_questions
    from .search_examples import read_pair_file
    if model.side.meaning is None:
        raise ValueError("the model has no meaning search (meaning_dim 0)")
    t0 = time.perf_counter()
    books = list(cfg.data)
    if not books:
        raise ValueError("give at least one training book")
    docs = []
    if cfg.pairs:
        docs += pair_documents(model, books, read_pair_file(cfg.pairs), cfg.facts_per_document, cfg.document_chars,
                               cfg.seed, log)
    for path in cfg.book_questions:
        if path:
            docs += book_question_documents(model, books, read_book_questions(path), cfg.document_chars, log)
    val = [d for path in cfg.val_questions if path for d in
           book_question_documents(model, books + list(cfg.val_books), read_book_questions(path), cfg.document_chars,
                                   log)]
    if not docs:
        raise ValueError("no training documents: give --pairs or --book-questions for these books")
    t_features = time.perf_counter() - t0
    model.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    proj = model.side.meaning
    for layer in (proj.question, proj.sentence):
        layer.reset_parameters()
    proj.requires_grad_(True)
    before = [r for d in docs for r in ranks(proj, d)]
    val_before = [r for d in val for r in ranks(proj, d)]
    losses = fit(proj, docs, steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                 temperature=cfg.temperature, seed=cfg.seed, log=log)
    after = [r for d in docs for r in ranks(proj, d)]
    val_after = [r for d in val for r in ranks(proj, d)]
    out = Path(cfg.out)
    path = model.save_checkpoint(out / "sidenet.safetensors", note=f"train-meaning: {len(docs)} documents, "
                                                                   f"{cfg.steps} steps")
    def top(rs: list[int], k: int) -> float | None:  # the share of ranks within the first k
        return sum(r <= k for r in rs) / len(rs) if rs else None
    report = {"checkpoint": str(path), "documents": len(docs), "questions": len(before),
              "training_top5_before": top(before, 5), "training_top5_after": top(after, 5), "losses": losses,
              "val_questions": len(val_after), "val_top1_before": top(val_before, 1),
              "val_top5_before": top(val_before, 5), "val_top1_after": top(val_after, 1),
              "val_top5_after": top(val_after, 5),
              "seconds_features": round(t_features, 1), "seconds": round(time.perf_counter() - t0, 1),
              "config": asdict(cfg)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


# ------------------------------------------------------------------------------------------ command line


def _files(paths: list[str]) -> list[str]:
    try:
        return [str(p) for p in text_files(paths)] if paths else []
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc


def _threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def cmd_train(args) -> dict:
    from ..model.model import LongMemModel
    cfg = config_from_args(TrainConfig, args)
    try:
        overrides = {"segment_length": args.segment_length} if args.segment_length else {}
        if args.memory_branch:
            overrides["memory_branch"] = args.memory_branch
        model = LongMemModel.load(backbone=args.backbone, checkpoint=args.checkpoint, device=args.device, **overrides)
        path = train(cfg, model, log=_stderr)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc
    return {"checkpoint": str(path)}


def cmd_train_retrieval(args) -> dict:
    from ..model.model import LongMemModel
    _threads(args)
    cfg = config_from_args(RetrievalTrainConfig, args, data=_files(args.data), eval=_files(args.eval))
    overrides = {"memory_query_rank": cfg.rank}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.segment_length:
        overrides["segment_length"] = args.segment_length
    try:
        model = LongMemModel(preset(args.preset, **overrides))
    except ValueError as exc:
        raise CliError(str(exc).splitlines()[0]) from exc
    torch.manual_seed(cfg.seed)
    model.side.q_mem_down.reset_parameters()
    torch.nn.init.normal_(model.side.q_mem_down.weight, std=model.backbone.d_model ** -0.5)
    return train_retrieval(model, cfg)


def cmd_train_recall(args) -> dict:
    from ..model.model import LongMemModel
    _threads(args)
    cfg = config_from_args(RecallTrainConfig, args, data=_files(args.data), eval=_files(args.eval),
                           checkpoint=args.checkpoint or default_checkpoint())
    model = LongMemModel.load(checkpoint=cfg.checkpoint)
    torch.manual_seed(cfg.seed)
    return train_recall(model, cfg)


def cmd_train_chat(args) -> dict:
    from ..model.model import LongMemModel
    _threads(args)
    cfg = config_from_args(ChatTrainConfig, args, checkpoint=args.checkpoint or default_checkpoint())
    try:
        model = LongMemModel.load(backbone=args.backbone, checkpoint=cfg.checkpoint, device=args.device)
        torch.manual_seed(cfg.seed)
        return train_chat(model, cfg)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def cmd_train_meaning(args) -> dict:
    from ..model.model import LongMemModel
    _threads(args)
    cfg = config_from_args(MeaningTrainConfig, args, data=_files(args.data),
                           checkpoint=args.checkpoint or default_checkpoint())
    try:
        model = LongMemModel.load(checkpoint=cfg.checkpoint, meaning_dim=cfg.dim, meaning_pool=cfg.pool)
        return train_meaning(model, cfg)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def register(sub) -> None:
    p = sub.add_parser("train", help="train the SideNet on .txt files read in order (memory of preceding segments)")
    add_config_options(p, TrainConfig)
    p.add_argument("--segment-length", type=int, default=None, help="tokens per segment (default 1024)")
    p.add_argument("--memory-branch", choices=MEMORY_BRANCHES, default=None,
                   help="closed: memory's change of the memory layer's output starts scaled by 0, so training starts "
                        "from the backbone exactly (beyond the paper); open: the paper's init (default: the "
                        "checkpoint's; a fresh SideNet's is closed)")
    add_common(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("train-retrieval", help="train the memory queries to find what was read (long-range "
                                               "induction + facts in books)", description=RetrievalTrainConfig.__doc__)
    add_config_options(p, RetrievalTrainConfig)
    p.add_argument("--backbone", default=None, help="backbone (default: the config preset's)")
    p.add_argument("--preset", default="default", help="config preset to start from (default, tiny, tiny-gpt2)")
    p.add_argument("--segment-length", type=int, default=None, help="override the preset's segment length")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(run=cmd_train_retrieval, always_json=True)

    p = sub.add_parser("train-recall", help="train the memory layer to use what it retrieves (facts recalled across "
                                            "thousands of tokens), from a checkpoint", description=RecallTrainConfig.__doc__)
    add_config_options(p, RecallTrainConfig)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(run=cmd_train_recall, always_json=True)

    p = sub.add_parser("train-meaning", help="train the meaning search (beyond the paper): questions find the "
                                             "sentence they ask about in other words", description=MeaningTrainConfig.__doc__)
    add_config_options(p, MeaningTrainConfig)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(run=cmd_train_meaning, always_json=True)

    p = sub.add_parser("train-chat", help="train on chat-format examples (answer tokens only), so a SideNet trained on "
                                          "books stays fluent in chat", description=ChatTrainConfig.__doc__)
    add_config_options(p, ChatTrainConfig)
    p.add_argument("--backbone", default=None, help="backbone (default: the checkpoint's)")
    p.add_argument("--device", default=None, help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(run=cmd_train_chat, always_json=True)
