"""The real app on the default backbone, driven in headless Chromium (Debian's, through Playwright):
a bad file is refused with a message; a book excerpt is read; a question gets an answer and retrieved chunks
whose text is in the book. A screenshot is saved (to $LONGMEM_SCREENSHOTS when set, with a screenshot of
every tab for the docs, else to a temporary folder)."""
import os
import re
import time
from pathlib import Path

import pytest

from conftest import ASSETS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
EXCERPT_CHARS = 3000  # about 700 tokens: one segment for the backbone to read
QUESTION = "What did the Time Traveller explain to his guests?"
VIEWPORT = {"width": 1360, "height": 1000}

pytestmark = pytest.mark.slow


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def served():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from app.handlers import load_model
    from app.ui import build_demo, launch_options
    demo = build_demo(load_model(), max_new_tokens=40)
    demo.launch(**launch_options(demo.longmem.settings, server_name="127.0.0.1", prevent_thread_lock=True,
                                 quiet=True, inbrowser=False))
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_upload_ask_and_see_retrieved_text_from_the_book(served, browser, tmp_path):
    shots = Path(os.environ.get("LONGMEM_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    book = (ASSETS / "the_time_machine_ch1.txt").read_text(encoding="utf-8")[:EXCERPT_CHARS]
    excerpt = tmp_path / "time_machine_excerpt.txt"
    excerpt.write_text(book, encoding="utf-8")
    binary = tmp_path / "not_really.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50)

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(served.local_url)
    files = page.locator("#lm-files input[type=file]")
    files.wait_for(state="attached", timeout=60_000)

    # a binary file with a .txt name: a clear message, memory stays empty
    files.set_input_files(str(binary))
    page.wait_for_timeout(500)
    page.locator("#lm-read").click()
    page.get_by_text("looks like a binary file").first.wait_for(timeout=60_000)
    if os.environ.get("LONGMEM_SCREENSHOTS"):
        page.screenshot(path=str(shots / "error.png"))
    assert "looks like a binary file" in page.locator("#lm-read-status").inner_text()  # also inline, not only a toast
    assert "Memory is empty" in page.locator("#lm-summary").inner_text()
    for close in page.locator("[data-testid=toast-close]").all():
        close.click()
    page.locator("#lm-files button[aria-label='Clear']").first.click()

    # read the excerpt
    files.set_input_files(str(excerpt))
    page.wait_for_timeout(500)
    page.locator("#lm-read").click()
    page.locator("#lm-read-status").get_by_text("Read into memory:").wait_for(timeout=120_000)
    tokens = int(re.sub(r"\D", "", page.locator("#lm-summary .lm-card b").first.inner_text()))
    assert tokens > 100
    page.screenshot(path=str(shots / "memory.png"), full_page=True)

    # ask a question: an answer streams, and the retrieved chunks are text of the book
    page.get_by_role("tab", name="Chat").click()
    page.locator("#lm-question textarea").fill(QUESTION)
    page.locator("#lm-question textarea").press("Enter")
    page.locator("#lm-retrieved .lm-chunk mark").first.wait_for(timeout=150_000)
    time.sleep(0.5)
    marks = [flat(m) for m in page.locator("#lm-retrieved .lm-chunk mark").all_inner_texts()]
    assert marks and all(m in flat(book) for m in marks if m)
    contexts = [flat(c).strip("…") for c in page.locator("#lm-retrieved .lm-context").all_inner_texts()]
    assert all(c in flat(book) for c in contexts)
    conversation = page.locator("#lm-chatbot").inner_text()
    assert QUESTION in conversation and len(flat(conversation)) > len(QUESTION) + 10
    assert "Answer mode" in page.locator("#lm-retrieved").inner_text()  # the panel says how memory answered
    page.screenshot(path=str(shots / "chat.png"), full_page=True)

    page.get_by_role("tab", name="Memory map").click()
    page.locator("#lm-memory-map svg").first.wait_for(timeout=10_000)
    assert page.locator("#lm-memory-map").get_by_text("time_machine_excerpt.txt").count() >= 1
    page.screenshot(path=str(shots / "memory_map.png"), full_page=True)

    if os.environ.get("LONGMEM_SCREENSHOTS"):  # the docs' tour: classification and settings too (minutes)
        page.get_by_role("tab", name="Classify").click()
        page.get_by_label("A text").fill("a gripping , beautifully acted film")
        page.get_by_text("Use the bundled labelled test set").click()
        page.locator("#lm-classify").click()
        page.locator("#lm-classify-status").get_by_text("Done:").wait_for(timeout=900_000)
        page.screenshot(path=str(shots / "classify.png"), full_page=True)
        page.get_by_role("tab", name="Settings").click()
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "settings.png"), full_page=True)
    page.close()
