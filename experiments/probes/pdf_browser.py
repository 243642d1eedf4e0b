"""Probe: the real app in Chromium on a PDF, questions asked in one conversation, default settings; prints the
answers with what the Chat tab shows beside them and saves a screenshot. As natbib_browser.py, for any PDF.

    .venv/bin/python experiments/probes/pdf_browser.py PDF SCREENSHOT.png "question 1" "question 2" ...
"""
import os, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from playwright.sync_api import sync_playwright
ROOT = str(Path(__file__).resolve().parents[2])
PDF, SHOT, QUESTIONS = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = {**os.environ, "PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "LONGMEM_BROWSER": "0", "GRADIO_ANALYTICS_ENABLED": "False"}
app = subprocess.Popen([f"{ROOT}/.venv/bin/python", "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2); break
        except OSError:
            time.sleep(0.5)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = b.new_page(viewport={"width": 1360, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(PDF)
        page.wait_for_timeout(500)
        page.locator("#lm-read").click()
        page.locator("#lm-read-status").get_by_text("Read into memory:").wait_for(timeout=600_000)
        page.get_by_role("tab", name="Chat").click()
        page.wait_for_timeout(1000)
        qs = QUESTIONS
        for n, q in enumerate(qs, 1):
            page.locator("#lm-question textarea").fill(q)
            page.locator("#lm-question textarea").press("Enter")
            page.locator("#lm-chatbot blockquote").nth(n - 1).wait_for(timeout=300_000)
            time.sleep(1.0)
        answers = page.locator("#lm-chatbot [data-testid=bot]").all_inner_texts()
        for q, a in zip(qs, answers):
            print("Q:", q); print("A:", " ".join(a.split())); print()
        page.screenshot(path=SHOT, full_page=True)
        b.close()
finally:
    app.terminate()
