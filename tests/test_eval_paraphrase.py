"""eval-paraphrase: the pair files (answers in their facts, questions in other words), planting, the rows and
records, the CLI."""
import json
from collections import Counter

import pytest

from conftest import BOOK, ROOT
from longmem_core.evals import eval_paraphrase as ep
from longmem_core.evals.needles import Haystack
from test_cli import run

PARAPHRASE = ROOT / "data" / "needles" / "paraphrase.jsonl"
LITERAL = ROOT / "data" / "needles" / "literal.jsonl"
RECORD_KEYS = {"pairs", "id", "kind", "split", "question", "answers", "depth", "found", "found_memory", "found_bm25",
               "found_meaning", "read_back", "answered", "output", "rank_memory", "rank_bm25", "answer_elsewhere", "shared_words"}
ROW_KEYS = {"pairs", "kind", "n", "found", "found_memory", "found_bm25", "found_meaning", "read_back", "answered"}


def stems(text: str) -> set[str]:
    """Content words cut to a rough stem (a common suffix off, then 5 letters): "rioting" and "riot" meet."""
    out = set()
    for w in ep.content_words(text):
        for suffix in ("ing", "ed", "es", "s", "er", "ly", "al"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[:-len(suffix)]
                break
        out.add(w[:5])
    return out


@pytest.mark.parametrize("path", [PARAPHRASE, LITERAL], ids=lambda p: p.name)
def test_pair_files_are_well_formed(path):
    pairs = ep.read_pairs(path)
    assert len({p["fact"] for p in pairs}) == len(pairs) and len({p["question"] for p in pairs}) == len(pairs)
    splits = Counter(p["split"] for p in pairs)
    assert splits["tuning"] == splits["report"] == len(pairs) // 2  # half and half, by pair
    for p in pairs:
        for a in p["answers"]:
            assert ep.mentions(p["fact"], [a]), (p["id"], a)  # each answer is stated in its fact, as whole words
            assert not ep.mentions(p["question"], [a]), (p["id"], a)  # and the question does not give it away


def test_paraphrase_pairs_ask_in_other_words():
    pairs = ep.read_pairs(PARAPHRASE)
    assert len(pairs) >= 48
    kinds = Counter(p["kind"] for p in pairs)
    assert len(kinds) >= 6 and min(kinds.values()) >= 6
    for kind in kinds:  # every kind in both halves
        assert {p["split"] for p in pairs if p["kind"] == kind} == {"tuning", "report"}
    for p in pairs:
        assert p.get("link"), p["id"]
        shared = ep.content_words(p["question"]) & ep.content_words(p["fact"])
        assert not shared, (p["id"], shared)  # no content word in common
        if p["kind"] != "form":  # only the grammatical-form kind shares word stems ("riot" / "rioting")
            assert not stems(p["question"]) & stems(p["fact"]), p["id"]
        else:
            assert len(stems(p["question"]) & stems(p["fact"])) <= 3, p["id"]


def test_literal_pairs_ask_in_the_facts_words():
    for p in ep.read_pairs(LITERAL):
        assert len(ep.content_words(p["question"]) & ep.content_words(p["fact"])) >= 3, p["id"]


def test_the_two_files_share_no_fact_or_answer():
    para, lit = ep.read_pairs(PARAPHRASE), ep.read_pairs(LITERAL)
    assert not {p["fact"] for p in para} & {p["fact"] for p in lit}
    assert not {a.lower() for p in para for a in p["answers"]} & {a.lower() for p in lit for a in p["answers"]}


def test_bad_pair_files(tmp_path):
    f = tmp_path / "p.jsonl"
    good = {"id": "a", "kind": "synonym", "split": "report", "fact": "F.", "question": "Q?", "answers": ["F"]}
    for body, msg in (("not json\n", ":1: not JSON"), (json.dumps({**good, "split": "both"}) + "\n", ":1: needs"),
                      (json.dumps({**good, "answers": []}) + "\n", ":1: needs"), ("\n", "no pairs"),
                      (json.dumps(good) + "\n" + json.dumps(good) + "\n", "ids repeat")):
        f.write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=msg):
            ep.read_pairs(f)


def test_mentions_whole_words_only():
    assert ep.mentions("It was Miss  Prudence\nAske.", ["Prudence Aske"])
    assert ep.mentions("ASKE", ["Aske"])
    assert not ep.mentions("She asked him.", ["Aske"])
    assert not ep.mentions("Vauxhall", ["Vaux"])


def test_content_words_drop_stop_words_and_possessives():
    assert ep.content_words("Which lady's steed began to limp?") == {"lady", "steed", "began", "limp"}


def test_split_and_limit():
    pairs = ep.read_pairs(PARAPHRASE)
    report = ep.select(pairs, "report", None)
    assert report and all(p["split"] == "report" for p in report)
    assert len(ep.select(pairs, "all", None)) == len(pairs) and len(ep.select(pairs, "tuning", 3)) == 3


def test_plant_puts_the_fact_once_at_its_span(make_model):
    model = make_model("tiny")
    haystack = Haystack(BOOK.read_text(encoding="utf-8"), model.tokenizer)
    pair = ep.read_pairs(PARAPHRASE)[0]
    doc, fact = ep.plant(haystack, pair, 400, seed=0)
    assert doc[fact.char_start:fact.char_end] == pair["fact"] and doc.count(pair["fact"]) == 1
    assert abs(haystack.count(doc) - 400) <= 8  # within a few tokens where the fact meets the text
    again, _ = ep.plant(haystack, pair, 400, seed=0)
    other, _ = ep.plant(haystack, pair, 400, seed=1)
    assert again == doc and other != doc  # drawn from the pair's id and the seed only


def test_plant_together_puts_every_fact_once_in_one_document(make_model):
    model = make_model("tiny")
    haystack = Haystack(BOOK.read_text(encoding="utf-8"), model.tokenizer)
    pairs = ep.read_pairs(PARAPHRASE)[:5]
    doc, facts = ep.plant_together(haystack, pairs, 1200, seed=0)
    for pair, fact in zip(pairs, facts):
        assert doc[fact.char_start:fact.char_end] == pair["fact"] and doc.count(pair["fact"]) == 1
    assert sorted(round(f.depth, 2) for f in facts) == [0.1, 0.3, 0.5, 0.7, 0.9]  # spread over the document
    assert abs(haystack.count(doc) - 1200) <= 40
    assert ep.plant_together(haystack, pairs, 1200, seed=0)[0] == doc != ep.plant_together(haystack, pairs, 1200, 1)[0]


def test_together_memorizes_once_and_asks_every_pair(make_model, monkeypatch):
    model = make_model("tiny", capacity=64)
    para = ep.read_pairs(PARAPHRASE)[:3]
    calls = []
    real = ep.memorized
    monkeypatch.setattr(ep, "memorized", lambda *a: calls.append(1) or real(*a))
    rows, records = ep.evaluate(model, BOOK.read_text(encoding="utf-8"), {"paraphrase": para}, length=600,
                                max_new_tokens=4, together=True)
    assert len(calls) == 1 and [r["id"] for r in records] == [p["id"] for p in para]
    assert all(r["rank_memory"] >= 1 and not r["answer_elsewhere"] for r in records)


def test_a_search_finds_the_fact_through_a_chunk_whose_passage_holds_it():
    from longmem_core.memory.memory_bank import ChunkInfo
    from longmem_core.model.model import Retrieved
    from longmem_core.answer.read_back import sentence_bounds
    filler = "It rained all day. " * 100
    doc = filler + "The cobbler hid his savings inside a hollow bedpost. " + filler
    fact = ep.Fact("The cobbler hid his savings inside a hollow bedpost.", 0.5, len(filler), len(filler) + 52)
    bounds = sentence_bounds(doc)

    def chunk(start, source=ep.SOURCE):
        return Retrieved(ChunkInfo(0, source, 0, 1, start, start + 12, doc[start:start + 12]), 1.0)
    assert ep.finds_fact([chunk(fact.char_start + 20)], doc, bounds, fact)  # a chunk inside the fact
    assert ep.finds_fact([chunk(fact.char_start - 40)], doc, bounds, fact)  # a neighbour: its passage holds it
    assert not ep.finds_fact([chunk(0), chunk(len(doc) - 12)], doc, bounds, fact)  # far away
    assert not ep.finds_fact([chunk(fact.char_start + 20, "elsewhere")], doc, bounds, fact)


def test_rank_of_counts_chunks_above_the_best_fact_chunk():
    import torch
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.5])
    assert ep.rank_of(scores, [2]) == 3 and ep.rank_of(scores, [2, 3]) == 2 and ep.rank_of(scores, [1]) == 1


def test_rows_and_records(make_model):
    model = make_model("tiny", capacity=64)
    para = ep.read_pairs(PARAPHRASE)
    two_kinds = [next(p for p in para if p["kind"] == k) for k in ("synonym", "number")]
    sets = {"paraphrase": two_kinds, "literal": ep.read_pairs(LITERAL)[:1]}
    seen = []
    rows, records = ep.evaluate(model, BOOK.read_text(encoding="utf-8"), sets, length=300, max_new_tokens=4,
                                on_record=seen.append)
    assert seen == records and [r["id"] for r in records] == [p["id"] for s in sets.values() for p in s]
    assert [(r["pairs"], r["kind"]) for r in rows] == [("paraphrase", "all"), ("paraphrase", "synonym"),
                                                       ("paraphrase", "number"), ("literal", "all")]
    for row in rows:
        assert set(row) == ROW_KEYS and all(0 <= row[k] <= 1 for k in ep.SHARES)
    for r in records:
        assert set(r) >= RECORD_KEYS
        assert all(isinstance(r[k], bool) for k in (*ep.SHARES, "answer_elsewhere"))
        assert r["rank_memory"] >= 1 and (r["rank_bm25"] is None or r["rank_bm25"] >= 1)
        assert r["found_memory"] or r["rank_memory"] > 1  # the best chunk is always listed
        assert r["found_bm25"] or r["rank_bm25"] != 1
    literal = records[-1]
    assert literal["found_bm25"] and literal["rank_bm25"] == 1  # its rare words: BM25 finds it first
    assert len(literal["shared_words"]) >= 3 and records[0]["shared_words"] == []


def test_cli_json():
    proc = run("eval-paraphrase", "--length", "300", "--limit", "1", "--max-new-tokens", "4", "--backbone",
               "tiny-llama", "--json")
    out = json.loads(proc.stdout)
    assert out["evaluation"] == "paraphrase" and out["split"] == "report" and out["length"] == 300
    assert out["command"].startswith("python -m longmem_core eval-paraphrase")
    assert out["pairs_files"] == ["paraphrase.jsonl", "literal.jsonl"]
    assert [(r["pairs"], r["kind"]) for r in out["rows"]] == [("paraphrase", "all"), ("literal", "all")]
    assert all(set(r) == ROW_KEYS for r in out["rows"]) and len(out["pairs"]) == 2
    assert all(set(r) >= RECORD_KEYS and r["split"] == "report" for r in out["pairs"])
    assert "eval-paraphrase" in proc.stderr  # the progress bar


def test_cli_bad_arguments_one_error_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    for args in (["--mode", "nope"], ["--pairs", str(bad)], ["--pairs", "/nope.jsonl"], ["--length", "10"],
                 ["--text", "/nope.txt"]):
        proc = run("eval-paraphrase", *args, "--backbone", "tiny-llama", check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr, args
