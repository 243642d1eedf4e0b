"""Evaluations (not imported by the runtime): perplexity, pass key and ChapterBreak (evaluate, with ppl_cache and
ppl_adapt beside perplexity), RULER-style needles (needles, eval_niah), facts asked in other words (eval_paraphrase),
factual questions (eval_qa), and the BM25 baseline (bm25)."""
