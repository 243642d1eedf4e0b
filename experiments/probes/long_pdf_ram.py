"""Where the resident memory of reading a long PDF goes (issue 29): the first 80,000 tokens of the gnuplot manual
read with the default backbone, RSS (after malloc_trim) per stored token after memorizing, then after the copy
path's token cache, the hybrid search's word index and a first answer, beside the bank's own bytes.

    PYTHONPATH=. nice -n 19 .venv/bin/python experiments/probes/long_pdf_ram.py
"""
import ctypes, time, sys, json
from pathlib import Path
from app import handlers
from app.session import Session
from longmem_core import read_document
from longmem_core.answer import neural_cache
from longmem_core.model import search
from longmem_core.documents.reading_plan import first_part, char_of
def rss():
    for l in Path("/proc/self/status").read_text().splitlines():
        if l.startswith("VmRSS"): return int(l.split()[1])*1024
trim = lambda: ctypes.CDLL("libc.so.6").malloc_trim(0)
m = handlers.load_model()
d = read_document('/tmp/pdfs/x/usr/share/doc/gnuplot/gnuplot.pdf')
d = first_part(d, char_of(m, d.text, 80000))
w = Session(); handlers.memorize(m, w, [type(d)("w", "Warm up. "*200)]); list(handlers.chat(m, w, "Warm?", max_new_tokens=4)); del w
trim(); r0 = rss(); out = {}
bank = m.new_bank(capacity=1<<20); bank.reserve(90000)
st = m.memorize(d.text, bank, source=d.name, pages=d.pages, page_labels=d.page_labels)
n = len(bank); out["bank_nbytes_per_token"] = bank.nbytes()/n
out["after_memorize"] = (rss()-r0)/n; trim(); out["after_memorize_trim"] = (rss()-r0)/n
neural_cache.cache_from_sources(m, bank); trim(); out["+token_cache"] = (rss()-r0)/n
search.lexical_scores(bank, ""); trim(); out["+word_index"] = (rss()-r0)/n
s = Session(); s.bank = bank
list(handlers.chat(m, s, "Where should bug reports about gnuplot be sent?")); trim(); out["+first_answer"] = (rss()-r0)/n
out["tokens"] = n
print(json.dumps({k: round(v, 1) for k, v in out.items()}))
