"""Retrieval training of the memory queries (longmem_core.training: objectives/retrieval.py, search_examples.py,
features.py) on the tiny random backbones."""
import json
import random

import pytest
import torch
from safetensors.torch import load_file

from longmem_core import LongMemModel
from longmem_core.training import facts
from longmem_core.cli import main as cli_main
from longmem_core.config import RetrievalTrainConfig
from longmem_core.training import features, run, search_examples
from longmem_core.training.objectives import retrieval as rt

TEXT = ("It was a bright cold day in April, and the clocks were striking thirteen.\n"
        "Winston Smith slipped quickly through the glass doors of Victory Mansions.\n") * 6


@pytest.mark.parametrize("name", ["tiny", "tiny-gpt2"])
def test_zero_initialised_delta_changes_nothing(make_model, name):
    plain, delta = make_model(name), make_model(name, memory_query_rank=4)
    assert delta.side.q_mem_up is not None and plain.side.q_mem_up is None
    bank_a, bank_b = plain.new_bank(), delta.new_bank()
    plain.memorize(TEXT, bank_a)
    delta.memorize(TEXT, bank_b)
    ids = torch.tensor([plain.encode("Winston Smith slipped")])
    a, b = plain(ids, bank_a, trace=True), delta(ids, bank_b, trace=True)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.trace.chunk_ids, b.trace.chunk_ids)


def test_rank_must_not_be_negative(make_model):
    with pytest.raises(ValueError, match="memory_query_rank"):
        make_model("tiny", memory_query_rank=-1)


@pytest.mark.parametrize("name", ["tiny", "tiny-gpt2"])
def test_cached_features_match_what_the_model_searches(make_model, name):
    """Chunk means of cached segments equal the bank's; the cached queries (with a non-zero delta) find the same
    chunks with the same scores as the model's own memory layer."""
    model = make_model(name, memory_query_rank=4, segment_length=32)
    torch.manual_seed(1)
    with torch.no_grad():
        model.side.q_mem_up.weight.normal_(std=0.5)
    ids = model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    seg = model.segment_length - 1
    pieces = [ids[i:i + seg] for i in range(0, len(ids), seg)]
    store = features.search_features(model, pieces)
    bank = model.new_bank(capacity=4096)
    model.memorize(TEXT, bank)
    means = features.BankCache(store, model.cfg.chunk_size).means(list(range(len(store))))
    assert torch.allclose(means, torch.from_numpy(bank.chunk_keys()), atol=1e-6)

    query = features.search_features(model, [pieces[1][:10]])[0]
    logits = rt.chunk_logits(model, rt.memory_queries(model, query.xn), means)  # [M, H, Nc] (scaled)
    out = model(torch.tensor([model.with_sink(pieces[1][:10])]), bank, trace=True)
    start = 1  # the sink token
    scores = out.trace.chunk_scores[0, start:]  # [M, H, R]
    scale = model.backbone.head_dim ** -0.5
    top = logits.topk(scores.shape[-1], dim=-1)
    assert torch.allclose(top.values / scale, scores, atol=2e-3)  # xn is cached in 16 bits
    assert (top.indices[..., 0] == out.trace.chunk_ids[0, start:, :, 0]).float().mean() > 0.95


def test_induction_targets_point_at_what_followed():
    ids = lambda xs: features.Segment(ids=torch.tensor(xs), keys=torch.zeros(len(xs), 1, 2, dtype=torch.float16),  # noqa: E731
                                xn=torch.zeros(len(xs), 3, dtype=torch.float16))
    store = [ids([1, 2, 3, 4, 5, 6, 7]), ids([9, 9, 5, 6, 8]), ids([0, 5, 6, 2, 3])]
    # query segment 2 against bank [0, 1] with chunk size 2: segment 0 has chunks 0..3, segment 1 chunks 4..6
    t = search_examples.induction_targets(store, [0, 1], 2, chunk_size=2)
    # (5, 6) at query position 2 occurs in seg 0 at p=5 (next token 7 -> chunk 3) and seg 1 at p=3 (next 8 -> chunk 4+2)
    assert t[2] == [3, 6]
    # (2, 3) at position 4: seg 0 p=2, next token 4 at index 3 -> chunk 1
    assert t[4] == [1]
    assert 1 not in t and 3 not in t  # (0, 5) and (6, 2) never occur in the bank
    assert search_examples.induction_targets(store, [0, 1], 2, chunk_size=2, max_count=1).get(2) is None  # too common


def test_infonce_and_ranks():
    logits = torch.tensor([[[3.0, 1.0, 2.0, 0.0]]])  # [M=1, H=1, Nc=4]
    pos = torch.tensor([[False, False, True, False]])
    assert rt.best_rank(logits, pos).item() == 2
    expected = torch.logsumexp(logits[0, 0], 0) - 2.0
    assert torch.allclose(rt.infonce(logits, pos), expected)


def test_facts_are_inserted_and_their_values_located(make_model):
    model = make_model("tiny")
    rng = random.Random(0)
    base = model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    for evaluation in (False, True):
        fact = facts.make_fact(rng, evaluation)
        ids, value_pos = facts.insert_fact(model.tokenizer, base, fact, rng)
        assert len(ids) > len(base)
        assert model.tokenizer.decode([ids[p] for p in value_pos]).strip() == fact.value
        assert fact.value not in fact.question
    fact = facts.make_fact(rng)
    for placement in facts.PLACEMENTS:  # training plants facts at varied places; every value is still located
        ids, value_pos = facts.insert_fact(model.tokenizer, base, fact, rng, placement)
        assert model.tokenizer.decode([ids[p] for p in value_pos]).strip() == fact.value
        if placement == "start":
            assert ids[len(ids) - len(base):] == base
        if placement == "end":
            assert ids[:len(base)] == base and min(value_pos) >= len(base)
        if placement == "paragraph":
            assert "\n\n" + fact.text.strip() + "\n\n" in model.tokenizer.decode(ids)
    other = facts.distractor(rng, fact)
    assert other.question != fact.question and other.value != fact.value
    train_keys = {f.split()[0] for f in facts.TRAIN_KEYS}
    assert not set(facts.EVAL_KEYS) & set(facts.TRAIN_KEYS) and "pass" not in train_keys


def test_training_improves_ranks_and_saves_only_the_delta(make_model, tmp_path):
    model = make_model("tiny", memory_query_rank=8, segment_length=48)
    books = []
    for i, text in enumerate((TEXT, TEXT.upper() + TEXT.lower())):
        p = tmp_path / f"book{i}.txt"
        p.write_text(text * 3, encoding="utf-8")
        books.append(str(p))
    store, groups = search_examples.build_store(model, books, excerpt_segments=4, facts_per_book=4, seed=0, log=lambda m: None)
    examples = search_examples.make_examples(store, groups, model.cfg.chunk_size)
    assert any(e.kind == "fact" for e in examples) and any(e.kind == "induction" for e in examples)
    before = rt.evaluate_ranks(model, examples, store, model.cfg.chunk_size)
    cfg = RetrievalTrainConfig(data=books, steps=150, batch=4, lr=1e-2, out=str(tmp_path / "run"))
    log = run(rt.Retrieval(model, store, examples, cfg), model, cfg, log=lambda m: None, progress=False).records
    after = rt.evaluate_ranks(model, examples, store, model.cfg.chunk_size)
    assert log[-1]["loss"] < log[0]["loss"]
    assert after["fact"]["median_rank"] < before["fact"]["median_rank"]
    path = model.save_checkpoint(tmp_path / "ckpt.safetensors")
    assert set(load_file(path)) == {"side.q_mem_down.weight", "side.q_mem_up.weight"}
    again = LongMemModel(model.cfg, backbone=model.backbone)
    again.load_checkpoint(path)
    assert torch.equal(again.side.q_mem_up.weight, model.side.q_mem_up.weight)
    # a model without the delta refuses the checkpoint clearly
    with pytest.raises(ValueError, match="q_mem"):
        make_model("tiny", segment_length=48).load_checkpoint(path)


def test_main_end_to_end(tmp_path, capsys):
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 4, encoding="utf-8")
    out = tmp_path / "run"
    assert cli_main(["train-retrieval", str(book), "--eval", str(book), "--preset", "tiny", "--out", str(out), "--steps", "20",
                    "--batch", "2", "--excerpt-segments", "3", "--facts-per-book", "2", "--eval-excerpt-segments", "3",
                    "--eval-facts-per-book", "2", "--segment-length", "48"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (out / "sidenet.safetensors").exists() and summary["eval_after"]
    model = LongMemModel.load(checkpoint=str(out / "sidenet.safetensors"))
    assert model.cfg.memory_query_rank > 0
    report = json.loads((out / "report.json").read_text())
    assert "hit@10" in report["retrieve_after"]


PAIRS = [{"id": "synonym-t1", "kind": "synonym", "fact": "The cooper Aldous Pennick mended casks every spring.",
          "question": "Which barrel-maker repaired tubs each year?", "answers": ["Aldous Pennick"]},
         {"id": "category-t1", "kind": "category", "fact": "Orla Brennagh kept a terrier in her shop.",
          "question": "Who owned a dog?", "answers": ["Orla Brennagh"], "split": "tuning"},
         {"id": "category-t2", "kind": "category", "fact": "Ilse Marquardt played the cello at dawn.",
          "question": "Who had a stringed instrument?", "answers": ["Ilse Marquardt"], "split": "report"}]


def test_pairs_asked_in_other_words_are_planted_with_the_whole_sentence_as_target(make_model, tmp_path):
    model = make_model("tiny", memory_query_rank=8, segment_length=160)  # a byte-level tokenizer: room for the fact
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 3, encoding="utf-8")
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PAIRS), encoding="utf-8")
    assert [p["id"] for p in search_examples.read_pair_file(path, split="tuning")] == ["category-t1"]
    pairs = search_examples.read_pair_file(path)
    store, groups = search_examples.build_store(model, [str(book)], excerpt_segments=2, facts_per_book=1, seed=0,
                                                pairs=pairs, log=lambda m: None)
    planted = [f for f in groups[0]["facts"] if f["kind"] == "paraphrase"]
    assert len(planted) == 3 and sum(f["kind"] == "fact" for f in groups[0]["facts"]) == 1
    for f, pair in zip(planted, pairs):
        ids = store[f["segment"]].ids.tolist()
        target = model.tokenizer.decode([ids[p] for p in f["value_pos"]])
        assert " ".join(target.split()) == pair["fact"]  # every token of the sentence is a target
        assert model.tokenizer.decode(store[f["question"]].ids.tolist()).endswith(pair["question"])
    examples = search_examples.make_examples(store, groups, model.cfg.chunk_size)
    kinds = {e.kind for e in examples}
    assert {"paraphrase", "fact"} <= kinds
    objective = rt.Retrieval(model, store, examples, RetrievalTrainConfig(data=[str(book)], out=str(tmp_path / "r")))
    assert sum(e.kind == "paraphrase" for e in objective.facts) == 3  # trained as facts are
    assert rt.evaluate_ranks(model, examples, store, model.cfg.chunk_size)["paraphrase"]["pairs"] > 0


def test_a_pair_file_without_facts_is_refused(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"question": "Who?"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="pairs.jsonl:1: needs"):
        search_examples.read_pair_file(path)


def test_questions_about_a_books_own_sentences_target_that_sentence_in_a_window_of_its_text(make_model, tmp_path):
    model = make_model("tiny", memory_query_rank=8, segment_length=160)
    book = tmp_path / "book.txt"
    sentence = "The ferryman Osric rowed the doctor across at dawn."
    book.write_text(TEXT * 2 + sentence + " " + TEXT * 2, encoding="utf-8")
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"id": "b-1", "book": "book.txt", "sentence": sentence,
                                "question": "Who took the physician over the river?", "answers": ["Osric"]}) + "\n"
                    + json.dumps({"id": "b-2", "book": "other.txt", "sentence": "x", "question": "y?",
                                  "answers": ["x"]}), encoding="utf-8")
    questions = search_examples.read_book_questions(path)
    part, entries = search_examples.book_question_store(model, [str(book)], questions, seed=0, log=lambda m: None)
    assert list(entries) == ["book.txt"] and len(part) == 2  # a question about a book not trained on is skipped
    e = entries["book.txt"][0]
    ids = part[e["segment"]].ids.tolist()
    assert model.tokenizer.decode([ids[p] for p in e["value_pos"]]) == sentence
    store, groups = search_examples.build_store(model, [str(book)], excerpt_segments=1, facts_per_book=1, seed=0,
                                                log=lambda m: None)
    n = len(store)
    search_examples.add_book_questions(store, groups, part, entries, model.tokenizer, log=lambda m: None)
    added = [f for f in groups[0]["facts"] if f["kind"] == "book"]
    assert len(store) == n + 2 and added and added[0]["segment"] == n + e["segment"]
    examples = search_examples.make_examples(store, groups, model.cfg.chunk_size, fact_distractors=3)
    assert any(x.kind == "book" for x in examples)
    fact = next(x for x in examples if x.kind == "fact")
    assert n + e["segment"] not in fact.bank  # distractors are facts of the same kind only
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"book": "book.txt", "sentence": "not in it", "question": "q?", "answers": ["a"]}))
    with pytest.raises(ValueError, match="not in book.txt"):
        search_examples.book_question_store(model, [str(book)], search_examples.read_book_questions(bad), log=print)


def test_fact_distractors_put_other_planted_facts_in_a_facts_bank(make_model, tmp_path):
    model = make_model("tiny", memory_query_rank=8, segment_length=160)
    book = tmp_path / "book.txt"
    book.write_text(TEXT * 3, encoding="utf-8")
    store, groups = search_examples.build_store(model, [str(book)], excerpt_segments=2, facts_per_book=5, seed=0,
                                                log=lambda m: None)
    facts = {f["segment"] for f in groups[0]["facts"]}
    for k in (0, 3):
        for ex in search_examples.make_examples(store, groups, model.cfg.chunk_size, fact_distractors=k):
            if ex.kind == "fact":
                assert len(facts & set(ex.bank)) == 1 + k
