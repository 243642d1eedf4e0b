"""Train the SideNet to *use* what it retrieves: recall a fact read thousands of tokens earlier.

``train-retrieval`` teaches the memory queries to find the chunk that holds a fact; this module teaches the
memory layer (its attention projections and the per-head gates) to bring the fact's tokens into the prediction.
In our runs it has not learned that yet (held-out loss falls, no fact is recalled): docs/RESULTS.md says why.

Shape legend: n tokens of a segment, G kv heads, D head dim.

An example is built like the pass-key test, but with other wordings (``retrieval_train.TRAIN_*``; the pass key's
wording is never trained on):

* memory: a few consecutive segments of a training book (read once, their memory keys/values cached) and, at a
  random place among them, a fresh segment of that book with a fact spliced in at a random depth;
* local context: a window of the same book, then a question about the fact and its answer.

The loss is the next-token loss on the answer's tokens plus ``lm_weight`` times the loss on the local book text
(which keeps the model a language model where memory holds nothing useful). The backbone is frozen: one step reads
the fact segment up to the memory layer, then runs the short local context through the model with gradients only
for the chosen SideNet parameters. Training starts from a checkpoint (default: the shipped one, whose
memory-query delta stays frozen) and the new checkpoint keeps every parameter trained before.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .model import LongMemModel
from .retrieval_train import Fact, book_ids, chat_question_ids, insert_fact, make_fact
from .train import make_optimizer, text_files


@dataclass
class RecallTrainConfig:
    data: list[str]  # training books (.txt files or folders)
    eval: list[str] = field(default_factory=list)  # held-out books (held-out wordings too)
    checkpoint: str | None = None  # start from this checkpoint (None: the default one)
    out: str = "runs/recall"
    steps: int = 300
    batch: int = 4  # examples per optimizer step
    lr: float = 3e-4
    gate_lr_scale: float = 20.0
    weight_decay: float = 0.0
    lm_weight: float = 0.25  # weight of the local book text's mean loss next to the answer's mean loss
    excerpt_segments: int = 4  # cached memory segments per training book (memory holds 1..this many + the fact)
    local_tokens: int = 192  # most book tokens in the local context before the question
    fact_window: int = 512  # most book tokens around the fact in its memory segment
    chat_share: float = 0.25  # examples asked through the chat template (the answer: "<value>.")
    trainable: str = "memory"
    shift_values: bool = False  # experiment: store each key with the next token's value (see build_bank)
    eval_examples: int = 24
    eval_every: int = 50
    seed: int = 0


@dataclass
class Excerpt:
    """Consecutive segments of one book as the backbone read them: memory keys/values per segment."""

    ids: list[int]  # the whole book's token ids (for fact windows and local text)
    start: int  # first token of the excerpt
    keys: list[torch.Tensor] = field(default_factory=list)  # per segment [n, G, D] float16
    values: list[torch.Tensor] = field(default_factory=list)


def read_excerpts(model: LongMemModel, books: list[str], n_segments: int, seed: int, log=print) -> list[Excerpt]:
    rng = random.Random(seed)
    seg = model.segment_length - (1 if model.sink_id is not None else 0)
    out = []
    for path in books:
        t0 = time.perf_counter()
        ids = book_ids(model, path)
        start = rng.randrange(0, max(1, len(ids) - seg * n_segments))
        ex = Excerpt(ids=ids, start=start)
        for i in range(n_segments):
            k, v = model.segment_kv(ids[start + i * seg:start + (i + 1) * seg])
            ex.keys.append(k.half().cpu())
            ex.values.append(v.half().cpu())
        out.append(ex)
        log(f"read {Path(path).name}: {n_segments} segments in {time.perf_counter() - t0:.0f} s")
    return out


@dataclass
class Example:
    bank_parts: list[tuple[torch.Tensor, torch.Tensor]]  # memory segments in reading order
    input_ids: list[int]  # local context + question + answer (sink token first)
    weights: list[float]  # per predicted position (len(input_ids) - 1): loss weight of the next token
    # (the answer's tokens share weight 1, the local book text's tokens share lm_weight)
    answer: list[int]  # positions (in input_ids) of the answer's value tokens
    fact: Fact


def make_example(model: LongMemModel, ex: Excerpt, rng: random.Random, cfg: RecallTrainConfig,
                 evaluation: bool = False) -> Example:
    """One example from an excerpt: memory = 1..all of its cached segments with a fresh fact segment among them;
    input = book text that follows them, a question about the fact, the answer (``evaluation``: held-out wordings)."""
    tok = model.tokenizer
    seg = model.segment_length - (1 if model.sink_id is not None else 0)
    n_mem = rng.randint(1, len(ex.keys))
    fact = make_fact(rng, evaluation)
    lo = min(64, seg // 4)
    length = rng.randint(lo, max(lo, min(cfg.fact_window, seg - lo)))  # book text around the fact
    s = rng.randrange(0, len(ex.ids) - length)
    fact_ids, _ = insert_fact(model, ex.ids[s:s + length], fact, rng)
    k, v = model.segment_kv(fact_ids[:seg])
    parts = [(ex.keys[i], ex.values[i]) for i in range(n_mem)]
    parts.insert(rng.randint(0, n_mem), (k, v))
    # local book text: what follows the memory segments in the book
    after = ex.start + n_mem * seg
    local = ex.ids[after:after + rng.randint(16, cfg.local_tokens)]
    if rng.random() < cfg.chat_share and not evaluation:
        question = chat_question_ids(model, fact.question)
        answer_text = f"{fact.value}."
    else:
        question = tok(" " + fact.question, add_special_tokens=False)["input_ids"]
        answer_text = f" {fact.value}."
    answer_ids = tok(answer_text, add_special_tokens=False)["input_ids"]
    enc = tok(answer_text, add_special_tokens=False, return_offsets_mapping=True)
    vs = answer_text.rindex(fact.value)
    value_tokens = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > vs and a < vs + len(fact.value)]
    ids = model.with_sink(local + question + answer_ids)
    first_answer = len(ids) - len(answer_ids)
    weights = [0.0] * (len(ids) - 1)
    start = len(ids) - len(local + question + answer_ids)
    for p in range(start, start + len(local) - 1):  # predicting the book's next token
        weights[p] = cfg.lm_weight / max(len(local) - 1, 1)
    answer = [first_answer + i for i in value_tokens]
    for p in range(first_answer, len(ids)):  # predicting each answer token
        weights[p - 1] = 1.0 / len(answer_ids)
    return Example(bank_parts=parts, input_ids=ids, weights=weights, answer=answer, fact=fact)


def build_bank(model: LongMemModel, parts: list[tuple[torch.Tensor, torch.Tensor]], shift_values: bool = False):
    """A bank holding ``parts`` in order. ``shift_values`` (an experiment, not the paper's design): each token's
    key is stored with the value of the token *after* it in its segment (the last token keeps its own), so a query
    that finds an earlier occurrence of the current token reads what followed it."""
    bank = model.new_bank(capacity=max(model.cfg.capacity, sum(k.shape[0] for k, _ in parts) + 64))
    offset = 0
    for k, v in parts:
        if shift_values:
            v = torch.cat([v[1:], v[-1:]])  # [n, G, D]
        bank.add(k.to(model.device, torch.float32), v.to(model.device, torch.float32), token_start=offset)
        offset += k.shape[0]
    return bank


def example_loss(model: LongMemModel, ex: Example, use_memory: bool = True,
                 shift_values: bool = False) -> tuple[torch.Tensor, bool]:
    """Weighted next-token loss of an example, and whether every value token was the model's top choice."""
    bank = build_bank(model, ex.bank_parts, shift_values) if use_memory else None
    x = torch.tensor([ex.input_ids], device=model.device)
    logits = model(x, bank).logits[0, :-1].float()  # [T-1, V]
    w = torch.tensor(ex.weights, device=logits.device)
    nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
    loss = (nll * w).sum()  # mean answer loss + lm_weight * mean book-text loss
    hit = all(int(logits[p - 1].argmax()) == ex.input_ids[p] for p in ex.answer)
    return loss, hit


@torch.no_grad()
def evaluate_recall(model: LongMemModel, examples: list[Example], shift_values: bool = False) -> dict:
    """Share of held-out facts whose value tokens are all the model's top choice (teacher-forced), with and
    without memory, and the mean answer loss."""
    res = {}
    for name, mem in (("memory", True), ("no_memory", False)):
        hits, loss = 0, 0.0
        for ex in examples:
            l, h = example_loss(model, ex, mem, shift_values)
            hits, loss = hits + h, loss + float(l)
        res[f"recall_{name}"] = hits / max(len(examples), 1)
        res[f"loss_{name}"] = loss / max(len(examples), 1)
    return res


def train_recall(model: LongMemModel, excerpts: list[Excerpt], cfg: RecallTrainConfig, eval_examples=None,
                 log=print) -> list[dict]:
    params, opt = make_optimizer(model, cfg.trainable, cfg.lr, cfg.gate_lr_scale, cfg.weight_decay)
    rng = random.Random(cfg.seed)
    records, t0 = [], time.perf_counter()
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, desc="train-recall", unit="step", file=sys.stderr)
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        total, hits = 0.0, 0
        for _ in range(cfg.batch):
            ex = make_example(model, rng.choice(excerpts), rng, cfg)
            loss, hit = example_loss(model, ex, shift_values=cfg.shift_values)
            (loss / cfg.batch).backward()
            total, hits = total + loss.item(), hits + hit
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{total / cfg.batch:.3f}", hits=f"{hits}/{cfg.batch}")
        bar.update(1)
        rec = {"step": step + 1, "loss": total / cfg.batch, "train_recall": hits / cfg.batch, "lr": lr,
               "seconds": round(time.perf_counter() - t0, 1),
               "gate": [round(g, 3) for g in torch.sigmoid(model.side.gate.detach()).tolist()]}
        if eval_examples and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            rec["eval"] = evaluate_recall(model, eval_examples, cfg.shift_values)
            log(json.dumps({"step": step + 1, **rec["eval"]}))
        records.append(rec)
    bar.close()
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m longmem_core train-recall", description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+", help="training books (.txt files or folders)")
    ap.add_argument("--eval", nargs="*", default=[], help="held-out books")
    ap.add_argument("--checkpoint", default=None, help="start from this checkpoint (default: the shipped one)")
    ap.add_argument("--out", default="runs/recall")
    d = RecallTrainConfig(data=[])
    for name in ("steps", "batch", "excerpt_segments", "local_tokens", "fact_window", "eval_examples", "eval_every",
                 "seed"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "gate_lr_scale", "weight_decay", "lm_weight", "chat_share"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    ap.add_argument("--trainable", default=d.trainable, choices=("memory", "all"))
    ap.add_argument("--shift-values", action="store_true",
                    help="experiment: store each key with the next token's value (a checkpoint trained so does not "
                         "fit the model's own banks)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from .config import default_checkpoint
    cfg = RecallTrainConfig(data=[str(p) for p in text_files(args.data)],
                            eval=[str(p) for p in text_files(args.eval)] if args.eval else [],
                            checkpoint=args.checkpoint or default_checkpoint(),
                            **{k: getattr(args, k) for k in ("out", "steps", "batch", "lr", "gate_lr_scale",
                                                              "weight_decay", "lm_weight", "excerpt_segments",
                                                              "local_tokens", "fact_window", "chat_share", "trainable", "shift_values",
                                                              "eval_examples", "eval_every", "seed")})
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = LongMemModel.load(checkpoint=cfg.checkpoint)
    torch.manual_seed(cfg.seed)
    excerpts = read_excerpts(model, cfg.data, cfg.excerpt_segments, cfg.seed, log)
    report: dict = {"train_config": asdict(cfg)}
    eval_examples = None
    if cfg.eval:
        ev = read_excerpts(model, cfg.eval, cfg.excerpt_segments, cfg.seed + 1, log)
        rng = random.Random(cfg.seed + 1)
        eval_examples = [make_example(model, ev[i % len(ev)], rng, cfg, evaluation=True)
                         for i in range(cfg.eval_examples)]
        report["eval_before"] = evaluate_recall(model, eval_examples, cfg.shift_values)
        log("held-out before: " + json.dumps(report["eval_before"]))
    t0 = time.perf_counter()
    report["log"] = train_recall(model, excerpts, cfg, eval_examples, log)
    report["train_seconds"] = round(time.perf_counter() - t0, 1)
    if eval_examples:
        report["eval_after"] = report["log"][-1]["eval"]
    path = model.save_checkpoint(out / "sidenet.safetensors",
                                 note=json.dumps({"kind": "recall", "train_config": asdict(cfg)}))
    report["checkpoint"] = str(path)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("checkpoint", "train_seconds", "eval_before", "eval_after") if k in report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
