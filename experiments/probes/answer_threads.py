"""Issue 29 (2026-12-07 note on fresh long PDFs): first-token latency of the app's default answer at ~45k tokens: 2 vs 1 intra-op threads (torch and faiss),
with the CPU to itself and with one core taken by another process.

    nice -n 0 .venv/bin/python experiments/probes/answer_threads.py [CHARS]   (default 160,000 characters of biblatex.pdf)
"""
import subprocess, sys, time
import torch, faiss
sys.path.insert(0, ".")
from app import handlers
from app.config import AppSettings
from app.session import Session
from longmem_core.documents.reading_plan import first_part
pdf = "/tmp/pdfs/x/usr/share/doc/texlive-doc/latex/biblatex/biblatex.pdf"
model = handlers.load_model()
settings = AppSettings()
doc = handlers.read_documents([pdf])[0]
doc = first_part(doc, int(sys.argv[1]) if len(sys.argv) > 1 else 160_000)
s = Session()
t = time.perf_counter(); handlers.memorize(model, s, [doc]); print("memorized", len(s.bank), "tokens in", round(time.perf_counter() - t, 1), "s", flush=True)
QS = ["Which C library does biber use to parse BibTeX format files?", "What is the minimum babel version supported by biblatex?",
      "Who maintains biblatex?"]
def ask(q):
    handlers.new_conversation(s)
    t0 = time.perf_counter(); first = None
    for r in handlers.chat(model, s, q, search_top=settings.search_top, max_new_tokens=settings.max_new_tokens):
        if first is None and not r.done: first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - t0, end - t0
ask("warm up?")
for label, burn in [("alone", False), ("one core taken", True)]:
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if burn else None
    time.sleep(0.3)
    for th in (2, 1):
        torch.set_num_threads(th); faiss.omp_set_num_threads(th)
        res = [ask(q) for q in QS]
        print(label, "threads", th, "first token s", [round(a, 2) for a, _ in res], "answer s", [round(b, 2) for _, b in res], flush=True)
    if p: p.kill()
