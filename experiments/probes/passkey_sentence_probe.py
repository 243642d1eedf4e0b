"""Pass-key trials of eval-passkey (same generator, seed 0) answered by sentence read-back with and without the copy path,
on a tuning book: which of the two reads the key back. Prints each trial and the totals.

    python experiments/probes/passkey_sentence_probe.py [BOOK]   (default frankenstein)
"""
import random, sys
from functools import partial
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2]))
from longmem_core.model.model import LongMemModel
from longmem_core.config import default_checkpoint
from longmem_core.answer import answer, sentences
from longmem_core.evals import evaluate
from longmem_core.model import segments
model = LongMemModel.load(checkpoint=default_checkpoint())
tok = model.tokenizer
book = sys.argv[1] if len(sys.argv) > 1 else 'frankenstein'
text = open(f'/work/shared/data/books/{book}.txt').read()
filler_ids = tok(text, add_special_tokens=False)["input_ids"]
rng = random.Random(0)
SHIPPED = sentences.narrow
V = {"base": ({}, "sentences_hybrid"), "base_cache": ({}, "sentences_hybrid_cache")}
tot = {v: 0 for v in V}
for length in (4000, 16000):
    for _ in range(4):
        key = rng.randrange(10_000, 100_000)
        needle = tok(evaluate.passkey_needle(key), add_special_tokens=False)["input_ids"]
        question = tok(evaluate.PASSKEY_QUESTION, add_special_tokens=False)["input_ids"]
        window = segments.segment_tokens(model) - len(question) - 8
        n_filler = length - len(needle) - len(question)
        start = rng.randrange(0, len(filler_ids) - n_filler + 1)
        filler = filler_ids[start:start + n_filler]
        depth = rng.randrange(0, n_filler - window)
        doc = filler[:depth] + needle + filler[depth:]
        bank = model.new_bank(capacity=max(model.cfg.capacity, length))
        model.memorize(tok.decode(doc[:-window]), bank, source="document")
        row = {}
        for v, (kw, mode) in V.items():
            sentences.narrow = partial(SHIPPED, **kw)
            a = answer.answer(model, bank, evaluate.PASSKEY_CHAT_QUESTION, mode=mode, max_new_tokens=16)
            sentences.narrow = SHIPPED
            ok = str(key) in a.text.replace(" ", "")
            tot[v] += ok
            row[v] = (ok, a.text[:40])
        print(length, row, flush=True)
print(tot)
