"""The search (longmem_core/model/search.py) on tiny models: what it lists is ranked by the score it returns."""
import numpy as np
import pytest
import torch

from longmem_core.model import search
from longmem_core.memory.memory_bank import BankMismatchError

TEXT = ("The old mill stood by the river. Nobody had lived there for years, and the wheel was still. "
        "One of the special magic numbers for quiet-lantern is: 4417203. The miller's daughter came back in spring.")


def _delta_model(make_model, name="tiny"):
    """A tiny model with a non-zero memory-query delta (as a trained one has)."""
    model = make_model(name, memory_query_rank=4)
    torch.manual_seed(1)
    torch.nn.init.normal_(model.side.q_mem_up.weight, std=0.5)
    return model


@pytest.fixture(params=["tiny", "tiny-gpt2"])
def model_and_bank(request, make_model):
    model = _delta_model(make_model, request.param)
    bank = model.new_bank()
    model.memorize(TEXT, bank, source="mill")
    return model, bank


def test_ranked_best_first_by_the_returned_score(model_and_bank):
    model, bank = model_and_bank
    got = search.rank_chunks(model, bank, "What is the magic number for quiet-lantern?", search_top=5)
    assert len(got) == 5
    scores = [r.score for r in got]
    assert scores == sorted(scores, reverse=True)
    every = search.chunk_scores(model, bank, "What is the magic number for quiet-lantern?")  # [Nc]
    ids = list(bank.chunk_ids)
    for r in got:
        assert r.score == pytest.approx(float(every[ids.index(r.info.chunk_id)]), rel=1e-6)
    assert float(every.max()) == pytest.approx(scores[0], rel=1e-6)  # nothing unlisted scored higher
    assert all(r.info.source == "mill" and r.info.text for r in got)


def test_top_larger_than_the_bank_lists_every_chunk_once(model_and_bank):
    model, bank = model_and_bank
    got = search.rank_chunks(model, bank, "mill", search_top=10 ** 6)
    assert sorted(r.info.chunk_id for r in got) == list(bank.chunk_ids)


def test_queries_are_the_ones_the_memory_layer_searches_with(model_and_bank):
    """The top chunks by query_vectors' inner products are the chunks the memory layer's search retrieved, with
    the same scores (trace), for every query token and head: the search scores what the model searches."""
    model, bank = model_and_bank
    query = "Where did the miller's daughter go?"
    qv = search.query_vectors(model, query)
    out = model(torch.tensor([model.encode(query)]), bank, trace=True)
    tr_ids, tr_scores = out.trace.chunk_ids[0], out.trace.chunk_scores[0]  # [T, H, R]
    means = torch.from_numpy(bank.chunk_keys())  # [G, Nc, D]
    T, H, D = qv.queries.shape
    G = means.shape[0]
    ip = torch.einsum("tgjd,gcd->tgjc", qv.queries.view(T, G, H // G, D), means).reshape(T, H, -1)  # [T, H, Nc]
    R = tr_ids.shape[-1]
    top = ip.topk(R, dim=-1)
    assert torch.allclose(top.values, tr_scores.float(), rtol=1e-4, atol=1e-4)
    assert torch.equal(top.indices + int(bank.first_id), tr_ids)


def test_chunk_scores_follow_their_definition(model_and_bank):
    """Whole-bank softmax of the last token's memory queries over the chunk-mean keys, summed over heads."""
    model, bank = model_and_bank
    query = "Tell me about the wheel."
    qv = search.query_vectors(model, query)
    means = torch.from_numpy(bank.chunk_keys())  # [G, Nc, D]
    H, D = qv.queries.shape[1], qv.queries.shape[2]
    per_head = means.repeat_interleave(H // means.shape[0], 0)  # [H, Nc, D] the kv head each query head searches
    logits = torch.einsum("hd,hcd->hc", qv.queries[-1], per_head) * D ** -0.5
    expected = torch.softmax(logits, -1).sum(0)  # [Nc]
    got = search.chunk_scores(model, bank, query)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert float(got.sum()) == pytest.approx(H, rel=1e-5)


def test_a_chunk_whose_keys_match_the_query_comes_first(make_model):
    """Plant a chunk whose mean key points where the query's memory queries point (per kv head, the normalised sum
    of its query heads' unit queries, 8 times a random key's scale) among 19 random chunks: the search must list
    it first, wherever it stands."""
    model = _delta_model(make_model)
    bank = model.new_bank()
    c, G, D = bank.chunk_size, bank.n_kv_heads, bank.head_dim
    qv = search.query_vectors(model, "magic number for quiet-lantern")
    q = qv.queries[-1:]  # [1, H, D] the last token's queries (what the search scores with)
    T, H = q.shape[0], q.shape[1]
    target = (q / q.norm(dim=-1, keepdim=True)).view(T, G, H // G, D).sum((0, 2))  # [G, D]
    target = target / target.norm(dim=-1, keepdim=True)
    gen = torch.Generator().manual_seed(0)
    for planted_at in (0, 7, 19):
        bank.reset()
        src = bank.add_source("noise", "")
        for j in range(20):
            keys = target.expand(c, G, D) * 8 if j == planted_at else torch.randn(c, G, D, generator=gen)
            bank.add(keys, torch.zeros(c, G, D), source=src, token_start=j * c)
        got = search.rank_chunks(model, bank, "magic number for quiet-lantern", search_top=3)
        assert got[0].info.chunk_id == bank.first_id + planted_at


def test_neighbour_smoothing_stays_inside_a_source():
    scores = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0])
    sources = np.array([0, 0, 0, 1, 1])
    out = search.neighbour_smooth(scores, sources, 0.5)
    assert torch.allclose(out, torch.tensor([0.5, 1.0, 0.5, 1.0, 2.0]))
    assert torch.equal(search.neighbour_smooth(scores, sources, 0.0), scores)


def test_content_tokens_drop_sink_punctuation_and_stop_words():
    tokens = ["<|endoftext|>", "What", "Ġis", "Ġthe", "Ġmagic", "Ġnumber", "Ġfor", "Ġquiet", "-", "lantern", "?"]
    mask = search.content_mask(tokens, sink=True)
    assert [t for t, m in zip(tokens, mask) if m] == ["Ġmagic", "Ġnumber", "Ġquiet", "lantern"]
    only_stop = search.content_mask(["<|endoftext|>", "What", "Ġis", "?"], sink=True)
    assert only_stop.tolist() == [False, True, True, True]  # nothing left: every token but the sink


def test_empty_bank_and_foreign_bank(make_model, tiny_backbones):
    model = make_model()
    assert search.rank_chunks(model, model.new_bank(), "anything") == []
    bank = model.new_bank()
    model.memorize(TEXT, bank)
    assert search.rank_chunks(model, bank, "") == []
    other = make_model("tiny-gpt2")
    with pytest.raises(BankMismatchError):
        search.rank_chunks(model, other.new_bank(), "anything")


def test_hybrid_search_fuses_the_model_search_with_bm25(tiny_model, book_text):
    """The fused ranking puts first a chunk that both rankings put first; scores are reciprocal-rank sums, best
    first; the BM25 index follows the bank (a new document is searchable at once)."""
    bank = tiny_model.new_bank(capacity=8192)
    tiny_model.memorize(book_text[:3000], bank, source="book")
    model_scores = search.chunk_scores(tiny_model, bank, "Filby")
    lexical = search.lexical_scores(bank, "Filby")
    assert lexical.shape == model_scores.shape and lexical.max() > 0
    found = search.hybrid_chunks(tiny_model, bank, "Filby", search_top=5)
    scores = [r.score for r in found]
    top_score = (1 + search.settings.SEARCH.lexical_weight) / (search.settings.SEARCH.rrf_k + 1)  # first in both rankings
    assert scores == sorted(scores, reverse=True) and scores[0] <= top_score
    fused = search.reciprocal_rank_fusion(model_scores, lexical, weights=(1.0, search.settings.SEARCH.lexical_weight))
    assert found[0].info.chunk_id == int(bank.chunk_ids[int(fused.argmax())])
    tiny_model.memorize("The zeppelin landed at Quetzalcoatl Field.", bank, source="news")
    best = search.hybrid_chunks(tiny_model, bank, "Quetzalcoatl", search_top=3)
    assert any(r.info.source == "news" for r in best)


def test_bm25_alone_lists_only_chunks_sharing_a_word_best_first(tiny_model):
    """``lexical_chunks``: the hybrid's BM25 side alone, the yardstick the hybrid is measured against."""
    bank = tiny_model.new_bank(capacity=8192)
    tiny_model.memorize("The harbour of Tarn lay quiet. " + "Nothing happened that day. " * 30, bank, source="a")
    found = search.lexical_chunks(tiny_model, bank, "Which harbour?", search_top=6)
    assert found and all(r.score > 0 for r in found)
    assert found[0].info.char_start < len("The harbour of Tarn")  # (tiny chunks: the word lies in its window)
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
    assert search.lexical_chunks(tiny_model, bank, "zeppelin", search_top=6) == []
    assert set(search.SEARCHES) == {"model", "hybrid", "bm25", "meaning"}


def test_bm25_of_the_hybrid_search_drops_question_words(tiny_model):
    """"What" and "mentioned" in a question are not evidence: a chunk that shares only them scores nothing."""
    bank = tiny_model.new_bank(capacity=8192)
    tiny_model.memorize("What a night it was, mentioned nowhere. The harbour of Tarn lay quiet.", bank, source="a")
    assert float(search.lexical_scores(bank, "What was mentioned?").max()) == 0.0
    assert float(search.lexical_scores(bank, "What harbour was mentioned?").max()) > 0.0


def test_concurrent_searches_on_one_model_each_get_their_own_queries(tiny_model, book_text):
    """The app serves several sessions with one model: a search must not pick up another thread's forward."""
    import threading
    bank = tiny_model.new_bank(capacity=8192)
    tiny_model.memorize(book_text[:2000], bank, source="book")
    queries = ["Filby", "What did the Time Traveller show his guests in the smoking room after dinner?"] * 4
    alone = [[r.info.chunk_id for r in search.rank_chunks(tiny_model, bank, q, 3)] for q in queries]
    got: dict[int, list[int]] = {}

    def run(i: int) -> None:
        got[i] = [r.info.chunk_id for r in search.rank_chunks(tiny_model, bank, queries[i], 3)]
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(queries))] == alone


def test_spread_top_skips_neighbours_of_better_chunks_in_the_same_source():
    import numpy as np
    scores = torch.tensor([0.1, 0.9, 0.8, 0.7, 0.2, 0.6, 0.5])
    sources = np.array([0, 0, 0, 0, 0, 1, 1])
    assert search.spread_top(scores, sources, 3, 0) == [1, 2, 3]
    # chunk 2 and 3 lie within 2 chunks of chunk 1; chunk 5 is near chunk 3 by position but in another source
    assert search.spread_top(scores, sources, 3, 2) == [1, 5, 4]
    # when the gap leaves fewer than asked, the best of the rest fill up, all best first
    assert search.spread_top(scores, sources, 5, 2) == [1, 2, 3, 5, 4]
    assert sorted(search.spread_top(scores, sources, 10, 2)) == list(range(7))


def test_memory_slots_give_the_model_searchs_own_best_a_place_in_the_hybrid_list():
    """Positions: the fusion's list keeps its best first; the model's own best that the fusion did not list take
    the last places, put second; one already listed (or near one) changes nothing."""
    sources = np.zeros(100, dtype=np.int64)
    fused = [10, 20, 30, 40, 50, 60]
    assert search.with_memory_slots(fused, [80], sources, 2) == [10, 80, 20, 30, 40, 50]
    assert search.with_memory_slots(fused, [80, 90], sources, 2) == [10, 80, 90, 20, 30, 40]
    assert search.with_memory_slots(fused, [31], sources, 2) == fused  # near a listed one
    other = sources.copy()
    other[31] = 1  # ... unless it lies in another source
    assert search.with_memory_slots(fused, [31], other, 2) == [10, 31, 20, 30, 40, 50]


def test_hybrid_search_with_memory_slots_marks_what_each_search_found(tiny_model, book_text):
    bank = tiny_model.new_bank(capacity=8192)
    tiny_model.memorize(book_text[:3000], bank, source="book")
    plain = search.hybrid_chunks(tiny_model, bank, "Filby", search_top=5)
    assert {r.found_by for r in plain} == {"hybrid"}
    slotted = search.hybrid_chunks(tiny_model, bank, "Filby", search_top=5, memory_slots=2)
    own = search.rank_chunks(tiny_model, bank, "Filby", search_top=2)
    assert len(slotted) == 5 and slotted[0].info.chunk_id == plain[0].info.chunk_id
    mine = [r for r in slotted if r.found_by == "memory"]
    assert all(r.info.chunk_id in {o.info.chunk_id for o in own} for r in mine)
    assert {r.found_by for r in search.rank_chunks(tiny_model, bank, "Filby", search_top=3)} == {"memory"}
