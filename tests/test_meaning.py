"""The meaning search (longmem_core/model/meaning.py) and its training (training/meaning.py, ``train-meaning``) on
the tiny random backbones."""
import json

import numpy as np
import pytest
import torch

from longmem_core import LongMemModel
from longmem_core.cli import main as cli_main
from longmem_core.model import meaning, search
from longmem_core.training import meaning as training

TEXT = ("The miller's horse went lame near the bridge. Mr. Hale sold the mill in spring! "
        "\"Was it sold?\" asked the clerk. Nobody answered him.\n\nA new paragraph starts here. ") * 3


def test_sentence_spans_keep_quotes_and_abbreviations_and_cut_long_runs():
    text = 'He said "Go." Then she left! Mr. Smith came.\n\nNew part here'
    assert [text[a:b] for a, b in meaning.sentence_spans(text)] == [
        'He said "Go."', "Then she left!", "Mr. Smith came.", "New part here"]
    long = "word " * 400  # no sentence end at all: pieces of MAX_SENTENCE_CHARS
    spans = meaning.sentence_spans(long)
    assert len(spans) == -(-len(long.rstrip()) // meaning.MAX_SENTENCE_CHARS)
    assert all(b - a <= meaning.MAX_SENTENCE_CHARS for a, b in spans)


def test_chunks_belong_to_the_sentence_holding_their_middle(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    tiny_model.memorize(TEXT, bank, source="t")
    which = meaning.chunk_sentences(bank)
    spans = meaning.sentence_spans(TEXT)
    assert len(which) == bank.n_chunks and which.min() == 0
    assert sorted(set(which.tolist())) == list(range(int(which.max()) + 1))  # numbered densely
    assert np.all(np.diff(which) >= 0)  # in reading order
    for (a, b), s in zip(bank.chunk_chars, which):
        middle = (a + b - 1) // 2
        lo = max(x for x, _ in spans if x <= middle)
        assert TEXT.index(TEXT[lo:lo + 5], lo) == lo  # a sentence start
        assert s == sorted(set(which[bank.chunk_chars[:, 0] <= middle].tolist()))[-1]


def test_sentence_values_are_the_mean_of_their_tokens_values(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    tiny_model.memorize(TEXT, bank, source="t")
    which = meaning.chunk_sentences(bank)
    feats = meaning.sentence_values(bank, which)  # [S, F]
    values = bank.values.float()  # [G, Nc, c, D]
    mask = bank.token_mask
    G, _, _, D = values.shape
    for s in (0, int(which.max())):
        chunks = torch.from_numpy(np.nonzero(which == s)[0])
        tokens = values[:, chunks].permute(1, 2, 0, 3).reshape(-1, G * D)[mask[chunks].reshape(-1)]
        assert torch.allclose(feats[s], tokens.mean(0), atol=1e-5)


def test_an_untrained_model_has_no_meaning_search_and_the_hybrid_is_unchanged(make_model):
    plain, with_maps = make_model("tiny"), make_model("tiny", meaning_dim=8)
    assert plain.side.meaning is None and with_maps.side.meaning is not None
    assert not meaning.available(plain) and not meaning.available(with_maps)  # maps present but not trained
    banks = []
    for m in (plain, with_maps):
        banks.append(m.new_bank(capacity=4096))
        m.memorize(TEXT, banks[-1], source="t")
    q = "Who sold the mill?"
    a = search.hybrid_chunks(plain, banks[0], q, 4)
    b = search.hybrid_chunks(with_maps, banks[1], q, 4)
    assert [r.info.chunk_id for r in a] == [r.info.chunk_id for r in b]
    assert search.meaning_chunks(with_maps, banks[1], q, 4) == []
    assert search.anchor_count(with_maps) == search.settings.SEARCH.memory_slots


def test_meaning_dim_must_not_be_negative(make_model):
    with pytest.raises(ValueError, match="meaning_dim"):
        make_model("tiny", meaning_dim=-1)


def test_plant_puts_each_fact_at_a_sentence_start_and_says_where():
    import random
    text = "One sentence here. Another one there. A third one. The fourth. And a fifth one."
    facts = ["Anna sold the red cow.", "Bert lost his hat."]
    doc, at = training.plant(text, facts, random.Random(3))
    for fact, start in zip(facts, at):
        assert doc[start:start + len(fact)] == fact
        assert start == 0 or doc[start - 2] in ".!?"
    assert doc.replace(facts[0] + " ", "").replace(facts[1] + " ", "") == text


def test_train_meaning_learns_its_documents_and_the_checkpoint_turns_the_search_on(tmp_path, tiny_backbones):
    book = tmp_path / "book.txt"
    filler = " ".join(f"Sentence number {i} tells of the {w} weather." for i, w in
                      zip(range(120), ["grey", "wet", "cold", "mild"] * 30))
    book.write_text(filler, encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    names = ["Alder", "Birch", "Cedar", "Dunn", "Elm", "Fir", "Gale", "Hart"]
    things = ["lantern", "violin", "saddle", "kettle", "ledger", "anchor", "compass", "ribbon"]
    pairs.write_text("\n".join(json.dumps({"fact": f"{n} bought a {t} at the fair.",
                                           "question": f"Who purchased the {t}?"}) for n, t in zip(names, things)))
    out = tmp_path / "run"
    from longmem_core.config import preset
    start = tmp_path / "start.safetensors"
    LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"]).save_checkpoint(start)
    assert cli_main(["train-meaning", str(book), "--pairs", str(pairs), "--book-questions", "", "--checkpoint",
                     str(start), "--dim", "16", "--steps", "150", "--facts-per-document", "4",
                     "--document-chars", "800", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["documents"] == 2 and report["questions"] == 8
    assert report["training_top5_after"] > report["training_top5_before"]
    assert report["losses"][-1] < report["losses"][0]
    model = LongMemModel.load(checkpoint=str(out / "sidenet.safetensors"))
    assert meaning.available(model) and "meaning" in model.trained_parts()
    bank = model.new_bank(capacity=4096)
    model.memorize(TEXT, bank, source="t")
    found = search.meaning_chunks(model, bank, "Who sold the mill?", 3)
    assert len(found) == 3 and all(r.found_by == "meaning" for r in found)
    assert search.anchor_count(model) == search.settings.SEARCH.memory_slots + search.settings.SEARCH.meaning_slots
    listed = search.hybrid_chunks(model, bank, "Who sold the mill?", 4)
    assert sum(r.found_by == "meaning" for r in listed) <= search.settings.SEARCH.meaning_slots
    # no word of the question in memory: the meaning search's best keep their name (and their anchor), whether
    # or not the fusion listed them too
    listed = search.hybrid_chunks(model, bank, "Zyx qwv?", 6)
    best = search.meaning_chunks(model, bank, "Zyx qwv?", search.settings.SEARCH.meaning_slots)
    assert {r.info.chunk_id for r in listed if r.found_by == "meaning"} == {r.info.chunk_id for r in best}


def test_train_meaning_refuses_a_malformed_line_by_its_number(tmp_path, tiny_backbones, capsys):
    book = tmp_path / "book.txt"
    book.write_text("One sentence here. Another one there. " * 20, encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"book": "book.txt", "sentence": "One sentence here.", "question": "What is here?"}\n'
                         '{"book": "book.txt", "question": "No sentence?"}\n', encoding="utf-8")
    from longmem_core.config import preset
    start = tmp_path / "start.safetensors"
    LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"]).save_checkpoint(start)
    code = cli_main(["train-meaning", str(book), "--pairs", "", "--book-questions", str(questions),
                     "--checkpoint", str(start), "--dim", "8", "--steps", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and f"{questions}:2: needs string fields 'book', 'sentence' and 'question'" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "sidenet.safetensors").exists()


def test_train_meaning_reads_several_question_files_and_ranks_held_out_questions_on_another_book(tmp_path,
                                                                                                 tiny_backbones):
    train_book, other = tmp_path / "train.txt", tmp_path / "other.txt"
    train_book.write_text(" ".join(f"Mr Alder owned {i} grey horses near the mill." for i in range(30)),
                          encoding="utf-8")
    other.write_text(" ".join(f"The ship number {i} sailed at dawn." for i in range(30)) +
                     " Captain Hart kept a parrot named Rolf.", encoding="utf-8")
    first, second, held = (tmp_path / n for n in ("a.jsonl", "b.jsonl", "val.jsonl"))
    row = lambda book, sentence, q: json.dumps({"book": book, "sentence": sentence, "question": q})  # noqa: E731
    first.write_text(row("train.txt", "Mr Alder owned 3 grey horses near the mill.", "How many horses?") + "\n")
    second.write_text(row("train.txt", "Mr Alder owned 7 grey horses near the mill.", "Seven horses?") + "\n")
    held.write_text(row("other.txt", "Captain Hart kept a parrot named Rolf.", "What was the bird called?") + "\n"
                    + row("train.txt", "Mr Alder owned 5 grey horses near the mill.", "Five?") + "\n")
    from longmem_core.config import preset
    start = tmp_path / "start.safetensors"
    LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"]).save_checkpoint(start)
    out = tmp_path / "run"
    assert cli_main(["train-meaning", str(train_book), "--pairs", "", "--book-questions", str(first), str(second),
                     "--val-questions", str(held), "--val-books", str(other), "--checkpoint", str(start),
                     "--dim", "8", "--steps", "5", "--document-chars", "600", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["questions"] == 2  # one from each training file
    assert report["val_questions"] == 2  # the held-out book's and the training book's held-out question
    assert 0 <= report["val_top1_after"] <= report["val_top5_after"] <= 1


def test_maxsim_averages_each_question_tokens_best_match_per_sentence():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # [Lq=2, R=2]
    tokens = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])  # [T=4, R]
    sentence = torch.tensor([0, 0, 1, 1])
    # sentence 0: token 1 best 1.0 (token 0), token 2 best 0.8 (token 1); sentence 1: 0.0 and 1.0
    assert torch.allclose(meaning.maxsim(q, tokens, sentence, 2), torch.tensor([0.9, 0.5]))


def test_token_pool_scores_each_chunk_by_its_sentences_late_interaction(make_model):
    model = make_model("tiny", meaning_dim=8, meaning_pool="tokens")
    bank = model.new_bank(capacity=4096)
    model.memorize(TEXT, bank, source="t")
    q = "Who sold the mill?"
    got = meaning.meaning_scores(model, bank, q)  # [Nc]
    which = meaning.chunk_sentences(bank)
    tokens, owner = meaning.token_values(bank, which)  # [T, F], [T]
    assert len(tokens) == int(bank.token_mask.sum()) and owner.tolist() == sorted(owner.tolist())
    centre = tokens.mean(0)
    proj, unit = model.side.meaning, torch.nn.functional.normalize
    with torch.no_grad():
        t = unit(proj.sentence(tokens - centre), dim=-1)
        qt = unit(proj.question(meaning.question_token_values(model, q) - centre), dim=-1)  # [Lq, R]
    for s in (0, int(which.max())):
        expected = (qt @ t[owner == s].T).max(1).values.mean()
        assert torch.allclose(got[torch.from_numpy(which == s)], expected.double(), atol=1e-5)
    mean_model = make_model("tiny", meaning_dim=8)  # the same maps scoring the means gives other scores
    mean_model.side.meaning.load_state_dict(model.side.meaning.state_dict())
    assert not torch.allclose(meaning.meaning_scores(mean_model, bank, q), got)


def test_meaning_pool_must_be_known(make_model):
    with pytest.raises(ValueError, match="meaning_pool"):
        make_model("tiny", meaning_dim=8, meaning_pool="max")


@pytest.mark.parametrize("pool", ["mean", "tokens"])
def test_train_meaning_writes_its_pool_into_the_checkpoint(tmp_path, tiny_backbones, pool):
    book = tmp_path / "book.txt"
    book.write_text(" ".join(f"Sentence {i} tells of the {w} weather." for i, w in
                             zip(range(60), ["grey", "wet", "cold", "mild"] * 15)), encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"fact": f"{n} bought a {t} at the fair.", "question": f"Who got the {t}?"})
                               for n, t in [("Alder", "lantern"), ("Birch", "violin"), ("Cedar", "saddle"),
                                            ("Dunn", "kettle")]))
    from longmem_core.config import preset
    start = tmp_path / "start.safetensors"
    LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"]).save_checkpoint(start)
    out = tmp_path / "run"
    assert cli_main(["train-meaning", str(book), "--pairs", str(pairs), "--book-questions", "", "--checkpoint",
                     str(start), "--dim", "8", "--steps", "60", "--facts-per-document", "4", "--pool", pool,
                     "--document-chars", "800", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["training_top5_after"] >= report["training_top5_before"]
    model = LongMemModel.load(checkpoint=str(out / "sidenet.safetensors"))
    assert model.cfg.meaning_pool == pool and meaning.available(model)
