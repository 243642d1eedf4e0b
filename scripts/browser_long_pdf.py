"""A long PDF in the real app, in a real browser (issue 29; a lab script, not part of the test run).

    nice -n 19 .venv/bin/python scripts/browser_long_pdf.py --pdf PDF --questions data/qa/pdf/long_chapters.jsonl \
        --per-part 3 --shots docs/screenshots/long_pdf --json experiments/results/runs/browser_long_pdf.json

What a person does: the app is started with its default settings, Debian's chromium opens it, the PDF is uploaded
and read ("Read into memory"), then the Chat tab is opened and questions about the PDF's first and last chapters
are typed one after another in one conversation, in the default answer mode. For each answer: the text shown, and
whether it holds one of the expected answers and cites the question's page. Screenshots of the Memory tab (the
cards: tokens, pages, RAM) and of the conversation are saved. The questions are the first ``--per-part`` of each
part (``first``, ``last``) in the question file, in its order: nothing is picked after a run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_long_pdf import cites_page, read_questions  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1360, "height": 1000}
READ_TIMEOUT_MS = 3_600_000  # an hour: a 300-page PDF takes minutes on 2 cores
ANSWER_TIMEOUT_S = 600
STABLE_S = 4.0  # an answer is finished once its text has not changed for this long


def flat(text: str) -> str:
    return " ".join(text.split())


def pick(path: Path, pdf_name: str, per_part: int) -> list[dict]:
    """The first ``per_part`` questions of each part about ``pdf_name``, first chapter's before last's."""
    rows = read_questions(path, pdf_name)
    return [r for part in ("first", "last") for r in [r for r in rows if r["part"] == part][:per_part]]


def wait_answer(page, n: int) -> str:
    """The n-th answer of the conversation once it stops changing."""
    bots = page.locator("#lm-chatbot [data-testid=bot]")
    deadline, last, since = time.time() + ANSWER_TIMEOUT_S, None, time.time()
    while time.time() < deadline:
        texts = bots.all_inner_texts()
        now = texts[n - 1] if len(texts) >= n else None
        if now != last:
            last, since = now, time.time()
        elif now and time.time() - since > STABLE_S:
            return flat(now)
        time.sleep(0.5)
    raise TimeoutError(f"answer {n} did not finish in {ANSWER_TIMEOUT_S} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--per-part", type=int, default=3)
    parser.add_argument("--shots", type=Path, help="save screenshots here")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    from app.handlers import load_model
    from app.ui import build_demo, launch_options
    from longmem_core.evals.eval_qa import contains_any

    questions = pick(args.questions, args.pdf.name, args.per_part)
    demo = build_demo(load_model())  # the app's defaults
    demo.launch(**launch_options(demo.longmem.settings, server_name="127.0.0.1", prevent_thread_lock=True,
                                 quiet=True, inbrowser=False))
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(demo.local_url)
            files = page.locator("#lm-files input[type=file]")
            files.wait_for(state="attached", timeout=60_000)
            t0 = time.perf_counter()
            files.set_input_files(str(args.pdf))
            page.wait_for_timeout(500)
            page.locator("#lm-read").click()
            page.locator("#lm-read-status").get_by_text("Read into memory:").wait_for(timeout=READ_TIMEOUT_MS)
            read_s = time.perf_counter() - t0
            status = flat(page.locator("#lm-read-status").inner_text())
            cards = flat(page.locator("#lm-summary").inner_text())
            print(f"read in {read_s:.0f} s: {status}\n{cards}", file=sys.stderr, flush=True)
            if args.shots:
                page.screenshot(path=str(args.shots / "memory.png"), full_page=True)
            page.get_by_role("tab", name="Chat").click()
            page.locator("#lm-retrieved").get_by_text("Memory holds").wait_for(timeout=30_000)
            for n, q in enumerate(questions, 1):
                page.locator("#lm-question textarea").fill(q["question"])
                page.locator("#lm-question textarea").press("Enter")
                shown = wait_answer(page, n)
                answer = shown.split("\u201c")[0]  # the answer itself, before its quote
                label = str(q.get("page_label"))
                results.append({"part": q["part"], "where": q["where"], "question": q["question"],
                                "expected": q["answers"],
                                "page_label": label, "shown": shown,
                                "answered": contains_any(answer, q["answers"]),
                                "quote_holds_it": contains_any(shown[len(answer):], q["answers"]),
                                "cites_its_page": cites_page(shown, label)})
                print(json.dumps(results[-1], ensure_ascii=False), file=sys.stderr, flush=True)
            if args.shots:
                page.screenshot(path=str(args.shots / "chat.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    summary = {part: {"questions": sum(r["part"] == part for r in results),
                      "answered": sum(r["answered"] for r in results if r["part"] == part),
                      "cites_its_page": sum(r["cites_its_page"] for r in results if r["part"] == part)}
               for part in ("first", "last")}
    out = {"command": "nice -n 19 .venv/bin/python " + " ".join(["scripts/browser_long_pdf.py", *sys.argv[1:]]),
           "date": time.strftime("%Y-%m-%d"), "pdf": args.pdf.name, "read_s": round(read_s, 1),
           "read_status": status, "memory_cards": cards, "summary": summary, "answers": results}
    text = json.dumps(out, indent=2, ensure_ascii=False)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
