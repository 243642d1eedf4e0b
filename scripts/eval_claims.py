"""Turn the JSON that eval-niah, eval-qa and eval-passkey print into results files for the results page, with
each figure set against its target (issues 13 and 14) so the page says met or not from the figures themselves.

    python scripts/eval_claims.py niah RUN.json [--date D] [--out experiments/results/niah.json]
    python scripts/eval_claims.py qa RUN.json [RUN.json ...] [--out experiments/results/qa.json]
    python scripts/eval_claims.py passkey RUN.json [RUN.json ...] --text BOOK [--out experiments/results/passkey_modes.json]
    python scripts/eval_claims.py icl RUN.json [RUN.json ...] [--out experiments/results/icl.json]   (one eval-icl run a task)
    python scripts/eval_claims.py icl-auto RUN.json [RUN.json ...] [--out experiments/results/icl_auto.json]   (issue 26)
    python scripts/eval_claims.py qa-pdf RUN.json [RUN.json ...] [--out experiments/results/qa_pdf.json]   (issue 24)
    python scripts/eval_claims.py paraphrase RUN.json [RUN.json ...] [--out experiments/results/paraphrase_16k.json]
    python scripts/eval_claims.py qa-searches RUN.json [RUN.json ...] [--out experiments/results/qa_searches.json]   (issue 25)

Per-trial and per-question outputs stay in the runs' own JSON (they are large); the results file keeps the rows,
the claims and the exact commands.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from longmem_core.answer.answer import DEFAULT_MODE  # noqa: E402  (claims mark the library's default mode)
from longmem_core.answer.quote import NOT_FOUND  # noqa: E402
RESULTS = ROOT / "experiments" / "results"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def met(ok: bool) -> str:
    return "yes" if ok else "no"


def backbone_mean(rows: list[dict]) -> str:
    """The backbone's mean accuracy over its rows, or that it was not run."""
    return pct(sum(r["accuracy"] for r in rows) / len(rows)) if rows else "not run"


def niah(runs: list[dict]) -> dict:
    """One or more eval-niah runs on the same book, lengths and seed (e.g. a later run of a new mode): their rows
    together, a (task, length, mode) counted once."""
    run = dict(runs[0])
    rows, seen = [], set()
    for r in (r for one in runs for r in one["rows"]):
        if (r["task"], r["length"], r["mode"]) not in seen:
            seen.add((r["task"], r["length"], r["mode"]))
            rows.append({k: r[k] for k in ("task", "length", "mode", "accuracy", "retrieval_recall", "trials")})
    run["modes"] = list(dict.fromkeys(m for one in runs for m in one["modes"]))
    run["command"] = " ; ".join(one["command"] for one in runs)
    run["default_mode"] = DEFAULT_MODE
    default = run["default_mode"]
    by = defaultdict(list)
    for r in rows:
        by[(r["mode"], r["length"])].append(r)
    claims = []
    for length in run["lengths"]:
        target = {16000: 0.9, 64000: 0.8}.get(length)
        bm25 = {r["task"]: r["retrieval_recall"] for r in by[("bm25", length)]}
        for mode in [m for m in run["modes"] if m not in ("bm25", "backbone")]:
            group = by[(mode, length)]
            if not group:
                continue
            acc = sum(r["accuracy"] for r in group) / len(group)
            recall = min(r["retrieval_recall"] for r in group)
            claims.append({
                "metric": f"{mode}{' (default)' if mode == default else ''}, {length:,} tokens: mean accuracy over "
                          f"{len(group)} tasks; lowest retrieval recall of a task",
                "figure": f"{pct(acc)}; recall {pct(recall)}",
                "baseline": f"backbone {backbone_mean(by[('backbone', length)])}; "
                            f"BM25 lowest recall {pct(min(bm25.values()) if bm25 else None)}",
                "target": (f"accuracy >= {pct(target)} (default mode); " if target else "")
                          + "recall >= 95% every task, not below BM25",
                "met": met((target is None or mode != default or acc >= target) and recall >= 0.95
                           and recall >= min(bm25.values(), default=1.0)),
            })
    return {"title": "Needles in a haystack, RULER-style (eval-niah)", "command": run["command"],
            "summary": f"Book: {run['text']} (a report book: nothing was trained or tuned on it). "
                       f"{run['trials']} trials per task and length, depths spread evenly over 0-100%; "
                       f"{run.get('search_top', run.get('top'))} chunks listed per mode; default mode: {default}.",
            "claims": [{"title": "eval-niah by mode", "rows": claims}], "rows": rows}


def qa(runs: list[dict]) -> dict:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    held = defaultdict(lambda: [0, 0])  # mode -> [questions whose retrieved text held the answer, of those right]
    seen: set[tuple[str, str]] = set()  # (book, mode): a mode run twice on a book (e.g. bm25) counts once
    for run in runs:
        fresh = {r["mode"] for r in run["rows"] if (run.get("text", ""), r["mode"]) not in seen}
        seen |= {(run.get("text", ""), m) for m in fresh}
        for q in run.get("questions", []):
            for mode, v in q["modes"].items():
                if mode in fresh and v.get("retrieved"):
                    held[mode][0] += 1
                    held[mode][1] += bool(v.get("correct"))
        for r in run["rows"]:
            if r["mode"] not in fresh:
                continue
            t = totals[r["mode"]]
            t[0] += (r["accuracy"] or 0) * r["n"]
            t[1] += r["retrieval_recall"] * r["n"]
            t[2] += r["n"]
    rows = [{"mode": m, "accuracy": None if m == "bm25" else round(a / n, 4), "retrieval_recall": round(rr / n, 4),
             "answered_when_held": None if m == "bm25" else f"{held[m][1]}/{held[m][0]}", "n": n}
            for m, (a, rr, n) in totals.items()]
    by = {r["mode"]: r for r in rows}
    default = DEFAULT_MODE
    back = by.get("backbone", {}).get("accuracy") or 0.0
    bm25 = by.get("bm25", {}).get("retrieval_recall", 0.0)
    claims = []
    for r in rows:
        if r["mode"] in ("bm25", "backbone"):
            continue
        a, h = r["accuracy"], held[r["mode"]]
        name = f"{r['mode']}{' (default)' if r['mode'] == default else ''}"
        claims.append({  # what memory's answers do (issue 14)
            "metric": f"{name}: accuracy; answered of the questions whose retrieved text held the answer",
            "figure": f"{pct(a)}; {r['answered_when_held']}",
            "baseline": f"backbone {pct(back)}",
            "target": "accuracy >= 3x the backbone (and above 0); >= 50% answered when held (issue 14)",
            "met": met(a >= 3 * back and a > 0 and h[0] > 0 and h[1] >= 0.5 * h[0]),
        })
        claims.append({  # what the mode reads back holds (issue 13's search target)
            "metric": f"{name}: retrieval recall (the text it read back or listed holds the answer)",
            "figure": pct(r["retrieval_recall"]),
            "baseline": f"BM25 recall {pct(bm25)}",
            "target": "recall >= 80% and above BM25 (issue 13)",
            "met": met(r["retrieval_recall"] >= 0.8 and r["retrieval_recall"] > bm25),
        })
    return {"title": "Factual questions about books (eval-qa)", "command": " ; ".join(r["command"] for r in runs),
            "summary": f"{sum(r['n'] for r in rows if r['mode'] == 'backbone')} questions written from report books "
                       "(data/qa/), answers stated once in the first 60,000 characters read into memory; pooled over "
                       f"the books. Default mode: {default}.",
            "claims": [{"title": "eval-qa by mode, pooled", "rows": claims}], "rows": rows}


def passkey(runs: list[dict], text: str) -> dict:
    rows, claims = [], []
    for run in runs:
        for length, r in run["lengths"].items():
            rows.append({"mode": run["mode"], "length": int(length), "accuracy": r["acc_longmem"],
                         "local_only": r["acc_local"], "trials": run["trials"]})
            claims.append({"metric": f"pass key, {int(length):,} tokens, mode {run['mode']}",
                           "figure": pct(r["acc_longmem"]), "baseline": f"local only {pct(r['acc_local'])}",
                           "target": ">= 95%", "met": met(r["acc_longmem"] >= 0.95), "command": run.get("command", "")})
    return {"title": "Pass key by answer mode (eval-passkey --mode)",
            "summary": f"The pass-key sentence hidden at a random depth of real text ({text}, a report book), "
                       "outside the local window; LongMem answers in the mode named, the baseline is the backbone "
                       "with the local window only.",
            "claims": [{"title": "pass key by mode", "rows": claims}], "rows": rows}


PAPER_TASKS = ("sst2", "sst5", "mr", "subj", "mpqa")  # the paper's five ICL tasks; any other task is a topic set


def icl(runs: list[dict]) -> dict:
    """eval-icl runs, one per task, every mode over the same demonstrations: a row per task and mode, and the
    classification target of issue 14 for each mode (the default marked): the mean of the paper's five tasks,
    and each other task, >= 20-shot in context + 3 points and >= the k-NN vote of the same run."""
    from longmem_core.classify.icl_modes import DEFAULT_MODE as ICL_DEFAULT
    rows = []
    for run in runs:
        for mode, a in run["accuracy"].items():
            rows.append({"task": run["task"], "mode": mode, "accuracy": round(a["mean"], 4), "std": round(a["std"], 4),
                         "seeds": ", ".join(f"{x:.3f}" for x in a["seeds"]), "n_test": run["n_test"],
                         "memory_size": run["memory_size"], "k": run["k"]})
    by_task = {run["task"]: {m: a["mean"] for m, a in run["accuracy"].items()} for run in runs}
    paper = [t for t in PAPER_TASKS if t in by_task]
    groups = ([("mean of the five paper tasks" if len(paper) == 5 else f"mean of {', '.join(paper)}", paper)]
              if paper else []) + [(t, [t]) for t in by_task if t not in PAPER_TASKS]
    claims = []
    for name, tasks in groups:
        def mean(mode: str) -> float:
            return sum(by_task[t][mode] for t in tasks) / len(tasks)
        context, knn = mean("context"), mean("knn")
        for mode in runs[0]["accuracy"]:
            if mode in ("context", "knn"):
                continue
            acc = mean(mode)
            claims.append({"metric": f"{name}: {mode}{' (default)' if mode == ICL_DEFAULT else ''}",
                           "figure": f"{acc:.3f} ({100 * (acc - context):+.1f} points)",
                           "baseline": f"20-shot in context {context:.3f}; k-NN vote {knn:.3f}",
                           "target": ">= in context + 3 points and >= k-NN vote" +
                                     (" (default mode)" if mode == ICL_DEFAULT else ""),
                           "met": met(acc >= context + 0.03 - 1e-9 and acc >= knn - 1e-9)})
    seeds = sorted({s for run in runs for s in run["seeds"]})
    from longmem_core.classify.icl_modes import MODES as ICL_MODES
    not_run = set(ICL_MODES) - set(runs[0]["accuracy"])
    return {"title": "Few-shot classification by mode (eval-icl --modes)",
            "command": " ; ".join(run.get("command", "") for run in runs),
            "summary": f"Tasks {', '.join(by_task)}; seeds {', '.join(seeds)}; {runs[0]['memory_size']} demonstrations "
                       f"read into memory per seed, {runs[0]['k']} in context; {runs[0]['n_test']} test texts per task "
                       f"(the same for every mode and seed). Baselines from the same runs: `context` (random 20-shot "
                       f"in context) and `knn` (5-NN vote over the demonstrations' memory keys). Default mode: "
                       f"{ICL_DEFAULT}.",
            "notes": [f"Modes not run here: {', '.join(sorted(not_run))}." if not_run else "Every mode ran.",
                      "centroid, context_cal and centroid_context are beyond the paper; their settings were chosen on "
                      "tuning data only (see experiments/notes/2026-12-02-icl.md and longmem_core/classify/icl_modes.py)."],
            "claims": [{"title": "classification: each mode against 20-shot in context and the k-NN vote",
                        "rows": claims}], "rows": rows}


SINGLE_MODES = ("context", "memory", "knn", "centroid", "context_cal", "centroid_context")  # what auto is set against


def icl_auto(runs: list[dict]) -> dict:
    """eval-icl runs with ``auto`` among the modes, one per task: issue 26's targets. Per task, auto within 2 points
    of the best single mode and never below 20-shot in context; over the tasks, auto's mean above every single
    mode's mean. Rows: per task, each mode's mean accuracy and macro-F1, auto's choice per seed and its time."""
    from longmem_core.classify.settings import SELECTION
    CANDIDATES, MAX_HELD_OUT = SELECTION.candidates, SELECTION.max_held_out
    by_task = {run["task"]: run for run in runs}
    singles = [m for m in SINGLE_MODES if all(m in run["accuracy"] for run in runs)]
    claims, rows = [], []
    for task, run in by_task.items():
        acc = {m: a["mean"] for m, a in run["accuracy"].items()}
        best = max(singles, key=lambda m: acc[m])
        chosen = ", ".join(f"{s}: {v['selection']['chosen']}" for s, v in run["seeds"].items())
        claims.append({"metric": f"{task}: auto (used {chosen})",
                       "figure": f"{acc['auto']:.3f} ({100 * (acc['auto'] - acc[best]):+.1f} points on {best})",
                       "baseline": f"best single mode {best} {acc[best]:.3f}; 20-shot in context {acc['context']:.3f}",
                       "target": "within 2 points of the best single mode, >= in context",
                       "met": met(acc["auto"] >= acc[best] - 0.02 - 1e-9 and acc["auto"] >= acc["context"] - 1e-9)})
        for mode, a in run["accuracy"].items():
            rows.append({"task": task, "mode": mode, "accuracy": round(a["mean"], 4),
                         "seeds": ", ".join(f"{x:.3f}" for x in a["seeds"]), "macro_f1": round(a["macro_f1"], 4),
                         "held_out_accuracy": ", ".join(
                             f"{v['selection']['accuracy'][mode if mode != 'auto' else v['selection']['chosen']]:.3f}"
                             for v in run["seeds"].values()
                             if (mode if mode != "auto" else v["selection"]["chosen"]) in v["selection"]["accuracy"])
                         or "—",
                         "learned_weights": "; ".join(
                             ", ".join(f"{e} {w:.2f}" for e, w in v["selection"].get("weights", {}).items())
                             for v in run["seeds"].values()) if mode == "auto" else ""})
    means = {m: sum(run["accuracy"][m]["mean"] for run in runs) / len(runs) for m in (*singles, "auto")}
    best_mean = max(singles, key=lambda m: means[m])
    claims.insert(0, {"metric": f"**mean of the {len(runs)} tasks**: auto",
                      "figure": f"**{means['auto']:.3f}**",
                      "baseline": "; ".join(f"{m} {means[m]:.3f}" for m in singles),
                      "target": "above every single mode's mean",
                      "met": met(all(means["auto"] > means[m] + 1e-9 for m in singles)) +
                             ("" if means["auto"] > means[best_mean] + 1e-9 else f" (best: {best_mean})")})
    timing = []
    for task, run in by_task.items():
        seeds = run["seeds"].values()
        choosing = sum(v["selection"]["seconds"] for v in seeds) / len(seeds)
        testing = sum(v["seconds"]["key"] + v["seconds"]["context"] for v in seeds) / len(seeds)
        added = sum(v["added_time"] for v in seeds) / len(seeds)
        timing.append({"metric": f"{task}: choosing ({max(v['selection']['held_out'] for v in seeds)} held out)",
                       "figure": f"{100 * added:.0f}% ({choosing:.1f} s)",
                       "baseline": f"{testing:.1f} s: the {run['n_test']} test texts as auto classifies them "
                                   "(key + in-context scoring)",
                       "target": "under 20%", "met": met(added < 0.2)})
    added = [v["added_time"] for run in runs for v in run["seeds"].values()]
    timing.insert(0, {"metric": "**mean over tasks and seeds**", "figure": f"**{100 * sum(added) / len(added):.0f}%**",
                      "baseline": "the test set as auto classifies it", "target": "under 20%",
                      "met": met(sum(added) / len(added) < 0.2)})
    seeds = sorted({s for run in runs for s in run["seeds"]})
    return {"title": "Few-shot classification that learns from held-out demonstrations (eval-icl, auto)",
            "command": " ; ".join(run.get("command", "") for run in runs),
            "summary": f"Tasks {', '.join(by_task)}; seeds {', '.join(seeds)}; {runs[0]['memory_size']} demonstrations "
                       f"in memory per seed, {runs[0]['k']} of them in context; {runs[0]['n_test']} test texts a task, "
                       f"the same for every mode and seed. auto learns the weights of a combination of calibrated "
                       f"in-context scores, label centroids and the k-NN vote on up to {MAX_HELD_OUT} demonstrations "
                       f"held out of memory, and uses it unless one of {', '.join(CANDIDATES)} was clearly better "
                       "there (longmem_core/classify/icl_select.py, icl_combine.py).",
            "notes": ["auto's design (the learned combination, 24 held out) was chosen on tuning sets that are "
                      "not here (CR, data/icl/chatter_topics): experiments/notes/2026-12-07-icl-combination.md.",
                      "held_out_accuracy: each mode's accuracy on the held-out demonstrations, per seed (auto's: the "
                      "combination's, each text predicted by a combination fitted without it); learned_weights: "
                      "auto's per seed."],
            "claims": [{"title": "auto against every single mode (issue 26)", "rows": claims},
                                    {"title": "the time choosing adds (issue 26)", "rows": timing}],
            "rows": rows}


def shipped_checkpoint(run: dict) -> bool:
    """Whether a run used the default checkpoint (none named, or assets/sidenet.safetensors)."""
    path = str(run.get("checkpoint") or "")
    return path in ("", "assets/sidenet.safetensors") or path.endswith("/assets/sidenet.safetensors")


def qa_pdf(runs: list[dict]) -> dict:
    """eval-qa runs on PDFs with ``--conversation`` (issue 24): the default mode single and in one conversation,
    pooled over the documents, against the backbone alone; answered when held; the cited page; clean endings."""
    default = DEFAULT_MODE
    pooled: dict[str, list[dict]] = defaultdict(list)  # run name -> every question's scores
    for run in runs:
        for q in run["questions"]:
            for mode, v in q["modes"].items():
                pooled[mode].append(v)

    def share(scores: list[dict], key: str) -> float:
        return sum(bool(s.get(key)) for s in scores) / len(scores) if scores else 0.0
    single, talk = pooled[default], pooled[default + "@conversation"]
    back = share(pooled["backbone"], "correct")
    held = [s for s in single if s["retrieved"]]
    right = [s for s in single if s["correct"]]
    quoted = [s for s in right if "quote" in s]
    acc, acc_talk = share(single, "correct"), share(talk, "correct")
    page_ok = sum(s["page_holds_answer"] for s in quoted)
    label_ok = [s for s in quoted if "page_label_match" in s]
    ragged = sum(not s["complete"] for s in single)
    not_found = sum(s["output"] == NOT_FOUND for s in single)
    rows = [{"mode": m, "accuracy": round(share(v, "correct"), 4), "retrieval_recall": round(share(v, "retrieved"), 4),
             "n": len(v)} for m, v in pooled.items()]
    n = len(single)
    which = ("(default)" if shipped_checkpoint(runs[0])
             else f"with {runs[0]['checkpoint']} (candidate, not the default)")
    claims = [
        {"metric": f"{default} {which}: factual questions on PDFs, single questions", "figure": f"{pct(acc)} "
         f"({sum(s['correct'] for s in single)} of {n})",
         "baseline": f"backbone alone {pct(back)}" if pooled.get("backbone") else "backbone alone: not run",
         "target": ">= 60% (issue 24)", "met": met(acc >= 0.6)},
        {"metric": f"{default}: the same questions asked one after another in one conversation",
         "figure": f"{pct(acc_talk)} ({sum(s['correct'] for s in talk)} of {len(talk)})",
         "baseline": f"single questions {pct(acc)}", "target": "within 5 points of the single run (issue 24)",
         "met": met(bool(talk) and abs(acc_talk - acc) <= 0.05)},
        {"metric": f"{default}: answered correctly of the questions whose read-back held the answer",
         "figure": f"{pct(len([s for s in held if s['correct']]) / len(held) if held else 0)} "
                   f"({sum(s['correct'] for s in held)} of {len(held)})",
         "baseline": f"read-back held the answer for {pct(len(held) / n if n else 0)}", "target": ">= 85% (issue 24)",
         "met": met(bool(held) and sum(s["correct"] for s in held) >= 0.85 * len(held))},
        {"metric": f"{default}: the quote's page holds the answer, of the correct answers",
         "figure": f"{page_ok} of {len(quoted)}" + (f"; printed page label as the question set's for "
                                                      f"{sum(s['page_label_match'] for s in label_ok)} of {len(label_ok)}"
                                                      if label_ok else ""),
         "baseline": "", "target": "whenever the answer is correct (issue 24)",
         "met": met(len(quoted) == len(right) and page_ok == len(quoted))},
        {"metric": f"{default}: answers that stop mid-sentence; answers that say nothing read back supports them",
         "figure": f"{ragged} of {n}; {not_found} of {n}", "baseline": "", "target": "no answer ends mid-sentence "
         "(issue 24)", "met": met(ragged == 0)},
    ]
    shorts = [s for s in single if s.get("short")]
    if any("short" in s for s in single):  # runs since the quoted sentence answers when no span is sure
        claims.append({"metric": f"{default}: short answers (a span of the quote the backbone was sure of), right of "
                                 "them; the other answers are the quoted sentence itself",
                       "figure": f"{len(shorts)} of {n}, {sum(s['correct'] for s in shorts)} right",
                       "baseline": "", "target": "", "met": ""})
    docs = ", ".join(run.get("text", "") for run in runs)
    return {"title": "Factual questions about real PDFs, single and in one conversation (eval-qa --conversation)",
            "command": " ; ".join(r["command"] for r in runs),
            "summary": f"{n} questions written for {docs} (data/qa/pdf/, Debian's documentation packages; "
                       f"scripts/fetch_pdfs.sh), answers stated in the first 120,000 characters read into memory; "
                       f"pooled over the documents. Default mode: {default}.",
            "claims": [{"title": "answers a person can trust (issue 24)", "rows": claims}], "rows": rows}


def paraphrase(runs: list[dict]) -> dict:
    """eval-paraphrase runs (issue 25): facts asked in other words, pooled over the runs (books), against the
    targets; the control asked in the facts' own words beside them. Per-pair records stay in the runs."""
    pooled: dict[str, list[dict]] = defaultdict(list)  # pairs file -> every pair's record
    for run in runs:
        for r in run["pairs"]:
            pooled[r["pairs"]].append(r)

    def share(records: list[dict], key: str) -> str:
        n = sum(bool(r[key]) for r in records)
        return f"{pct(n / len(records) if records else None)} ({n} of {len(records)})"

    def frac(records: list[dict], key: str) -> float:
        return sum(bool(r[key]) for r in records) / len(records) if records else 0.0
    run0 = runs[0]
    listed = run0.get('search_top', run0.get('top'))  # the key's name before issue 28: top
    mode, length = run0["mode"], run0["length"]
    if not shipped_checkpoint(run0):  # a candidate checkpoint, not the shipped default: say so
        mode = f"{mode} with {run0['checkpoint']} (candidate, not the default)"
    para, lit = pooled.get("paraphrase", []), pooled.get("literal", [])
    claims = [
        {"metric": f"{mode}: facts asked in other words at {length:,} tokens, found by its search (top {listed})",
         "figure": share(para, "found"), "baseline": f"BM25 alone {share(para, 'found_bm25')}; the memory's search "
         f"alone {share(para, 'found_memory')}" + (f"; the meaning search alone {share(para, 'found_meaning')}"
                                                   if any(r.get("found_meaning") for r in para) else ""),
         "target": ">= 60% (issue 25)", "met": met(frac(para, "found") >= 0.6)},
        {"metric": f"{mode}: the same facts answered", "figure": share(para, "answered"),
         "baseline": f"the fact read into the prompt {share(para, 'read_back')}", "target": ">= 40% (issue 25)",
         "met": met(frac(para, "answered") >= 0.4)},
    ]
    if lit:
        claims.append({"metric": f"{mode}: the control, facts asked in their own words: found by its search; answered",
                       "figure": f"{share(lit, 'found')}; {share(lit, 'answered')}",
                       "baseline": f"BM25 alone {share(lit, 'found_bm25')}; the memory's search alone "
                                   f"{share(lit, 'found_memory')}", "target": "stay where they are (issue 25)",
                       "met": "—"})
    rows = [{"text": run.get("text", ""), **r} for run in runs for r in run["rows"]]
    books = ", ".join(run.get("text", "") for run in runs)
    kinds = {r["kind"] for r in para}
    planted = ("all the facts of a file planted in one " f"{length:,}-token stretch of the book (depths spread evenly), "
               "memorized once, each question asked of it (--together: every fact is one planted sentence among "
               "many, so looking planted does not find it)") if run0.get("together") else (
               f"each fact planted once in a {length:,}-token stretch of the book, memorized into a fresh bank and "
               "asked")
    return {"title": f"Facts asked in other words at {length:,} tokens (eval-paraphrase)",
            "command": " ; ".join(run["command"] for run in runs),
            "summary": f"Book(s): {books}. The {run0['split']} half of the pairs written by hand for this project "
                       f"(data/needles/: {len(para)} asked in other words, {len(kinds)} kinds; {len(lit)} asked in "
                       f"the facts' own words as a control); {planted}. found: the passage read back around one of "
                       f"the {listed} chunks a search returns holds the fact; the answer mode's search (the "
                       "default mode's: search.hybrid_chunks), the memory's search alone (search.rank_chunks) and "
                       "BM25 alone (search.lexical_scores) in the same bank; read back: the fact is in the answer "
                       "mode's prompt; answered: the answer names the fact's answer.",
            "claims": [{"title": "needles asked in other words (issue 25)", "rows": claims}], "rows": rows}


def qa_searches(runs: list[dict]) -> dict:
    """eval-qa --searches runs (issue 25): the default mode reading back from its own search (the hybrid), from the
    memory's own search alone and from BM25 alone, in the same runs, pooled over the books."""
    default = runs[0]["default_mode"]
    pooled: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        for q in run["questions"]:
            for mode, v in q["modes"].items():
                pooled[mode].append(v)

    def share(mode: str, key: str) -> tuple[float, str]:
        vs = pooled[mode]
        n = sum(bool(v[key]) for v in vs)
        return n / len(vs), f"{pct(n / len(vs))} ({n} of {len(vs)})"
    hybrid, memory, bm25 = default, f"{default}[model]", f"{default}[bm25]"
    (h, h_txt), (m, m_txt), (b, b_txt) = (share(x, "retrieved") for x in (hybrid, memory, bm25))
    sense = f"{default}[meaning]"
    shipped = ("as shipped" if shipped_checkpoint(runs[0])
               else f"with {runs[0]['checkpoint']} (candidate, not the default)")
    claims = []
    if pooled.get(sense):  # the meaning search (beyond the paper), where the checkpoint trained it
        s_, s_txt = share(sense, "retrieved")
        claims.append({"metric": f"{default}, the meaning search alone (the bank's stored values, the SideNet's "
                                 "trained maps; beyond the paper): the text read back holds the answer",
                       "figure": s_txt, "baseline": f"BM25 alone {b_txt}; the memory's keys alone {m_txt}",
                       "target": ">= 50% (issue 25)", "met": met(s_ >= 0.5)})
    claims += [
        {"metric": f"{default}, the memory's own search alone: the text read back holds the answer", "figure": m_txt,
         "baseline": f"BM25 alone {b_txt}", "target": ">= 50% (issue 25)", "met": met(m >= 0.5)},
        {"metric": f"{default} {shipped} (the hybrid search): the text read back holds the answer", "figure": h_txt,
         "baseline": f"BM25 alone {b_txt}", "target": ">= BM25 alone + 5 points (issue 25)",
         "met": met(h >= b + 0.05)},
        {"metric": f"{default}: answered, hybrid / memory alone / BM25 alone",
         "figure": " / ".join(share(x, "correct")[1] for x in (hybrid, memory, bm25)), "baseline": "—",
         "target": "—", "met": "—"},
    ]
    rows = [{"text": run.get("text", ""), **r} for run in runs for r in run["rows"]]
    return {"title": "Factual questions: which search finds the answer (eval-qa --searches)",
            "command": " ; ".join(r["command"] for r in runs),
            "summary": f"{len(pooled[hybrid])} questions written from report books (data/qa/), answers stated once in "
                       "the first 60,000 characters read into memory; the default mode run three ways in the same "
                       "bank, reading back from its own hybrid search, from the memory's own search alone "
                       "(search.rank_chunks: the bank's keys and the SideNet's queries) and from BM25 alone "
                       "(search.lexical_chunks). Checkpoint: " + str(runs[0].get("checkpoint")) + ".",
            "claims": [{"title": "which search finds the answer (issue 25)", "rows": claims}], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["niah", "qa", "passkey", "icl", "icl-auto", "qa-pdf", "paraphrase", "qa-searches"])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--text", default="")
    p.add_argument("--title", default=None, help="the section title (default: the evaluation's)")
    p.add_argument("--note", default=None, help="replaces the summary")
    p.add_argument("--commands", nargs="*", default=[], help="passkey: the command of each run, in order")
    args = p.parse_args(argv)
    runs = [json.loads(Path(f).read_text()) for f in args.runs]
    for run, command in zip(runs, args.commands):
        run["command"] = command
    data = {"niah": lambda: niah(runs), "qa": lambda: qa(runs), "passkey": lambda: passkey(runs, args.text),
            "icl": lambda: icl(runs), "icl-auto": lambda: icl_auto(runs), "qa-pdf": lambda: qa_pdf(runs),
            "paraphrase": lambda: paraphrase(runs), "qa-searches": lambda: qa_searches(runs)}[args.kind]()
    data["date"] = args.date
    if args.title:
        data["title"] = args.title
        for claim in data.get("claims", []):
            claim["title"] = args.title
    if args.note:
        data["summary"] = args.note
    if args.kind == "passkey":
        data["command"] = " ; ".join(args.commands)
    out = Path(args.out or RESULTS / {"niah": "niah.json", "qa": "qa.json", "passkey": "passkey_modes.json",
                                      "icl": "icl.json", "icl-auto": "icl_auto.json", "qa-pdf": "qa_pdf.json",
                                      "paraphrase": "paraphrase_16k.json",
                                      "qa-searches": "qa_searches.json"}[args.kind])
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
