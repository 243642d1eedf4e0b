"""Probe: the real app in Chromium on texlive's natbib.pdf (not a tuning or report set), three questions in one
conversation, default settings; prints the answers and saves a screenshot (``pdf_browser.py`` with natbib's
questions).

    .venv/bin/python experiments/probes/natbib_browser.py docs/screenshots/chat_sentence_answers.png
"""
import subprocess
import sys
from pathlib import Path

PDF = "/tmp/pdfs/x/usr/share/doc/texlive-doc/latex/natbib/natbib.pdf"
QUESTIONS = ["Which command produces a textual citation?", "What does the square option do?",
             "And which option gives round parentheses?"]
subprocess.run([sys.executable, str(Path(__file__).with_name("pdf_browser.py")), PDF, sys.argv[1], *QUESTIONS],
               check=True)
