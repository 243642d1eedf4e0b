"""The app's handlers, called directly with a tiny model: no browser, no server."""
import io
import json
import threading
import zipfile

import pytest

from app import handlers, views
from app.background import Done, Stopped, stream
from app.handlers import AppError
from app.session import Session, SessionRegistry
from app.config import AppSettings
from longmem_core import LongMemModel, preset
from longmem_core.classify import icl, icl_modes, key_scores
from longmem_core.classify.settings import MODE, SELECTION
from pdf_util import make_pdf

BOOK = ("The Time Traveller was expounding a recondite matter to us. His pale grey eyes shone and twinkled. "
        "Filby, an argumentative person with red hair, said that the geometry was wrong. ") * 3
OTHER = "Mrs. Watchett came in with the lamp. The Psychologist looked at the little model. " * 3
CAPACITY = 4096


@pytest.fixture(scope="module")
def model(tiny_backbones):
    return LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"])


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def filled(model, tmp_path, text=BOOK, name="book.txt"):
    session = Session()
    docs = handlers.read_documents([write(tmp_path, name, text)])
    handlers.memorize(model, session, docs, capacity=CAPACITY)
    return session


@pytest.fixture(scope="module")
def shared(model, tmp_path_factory):
    """One filled session for the tests that must leave it unchanged."""
    return filled(model, tmp_path_factory.mktemp("shared"))


def finish(steps):
    *_, last = steps
    return last


# -- reading documents --

def test_memorize_reports_progress_and_keeps_exact_text(model, tmp_path):
    session, events = Session(), []
    docs = handlers.read_documents([write(tmp_path, "a.txt", BOOK), write(tmp_path, "b.md", OTHER)])
    report = handlers.memorize(model, session, docs, chunk_size=2, capacity=CAPACITY, progress=events.append)
    assert [d["name"] for d in report.documents] == ["a.txt", "b.md"] and not report.stopped
    stats = handlers.bank_stats(session)
    assert stats["tokens"] == sum(d["tokens"] for d in report.documents) == len(session.bank)
    assert [s["name"] for s in stats["sources"]] == ["a.txt", "b.md"] and stats["capacity"] == CAPACITY
    first_doc = [e for e in events if e.index == 0]
    assert [e.done for e in first_doc] == sorted(e.done for e in first_doc)
    assert first_doc[-1].done == first_doc[-1].total == report.documents[0]["tokens"]
    assert all(e.eta is not None and e.eta >= 0 for e in events if e.done)
    texts = {"a.txt": BOOK, "b.md": OTHER}
    for cid in session.bank.chunk_ids:
        info = session.bank.chunk_info(cid)
        assert info.text == texts[info.source][info.char_start:info.char_end]


def test_pdf_documents_are_read(model, tmp_path):
    session = Session()
    docs = handlers.read_documents([write(tmp_path, "book.pdf", make_pdf(["The pass key is 4071."]))])
    handlers.memorize(model, session, docs, capacity=CAPACITY)
    assert "4071" in session.bank.sources[0]["text"]


def _encrypted_pdf():
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(["secret"]))).pages:
        writer.add_page(page)
    writer.encrypt("pw")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("name,data,message", [
    ("empty.txt", b"", "empty"),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary"),
    ("corrupt.pdf", b"%PDF-1.4 this is not really a pdf", "not a readable PDF"),
    ("locked.pdf", None, "encrypted"),
    ("big.txt", b"x" * 3000, "over the limit"),
])
def test_bad_documents_leave_memory_as_it_was(shared, tmp_path, name, data, message):
    session = shared
    before = handlers.bank_stats(session)
    path = write(tmp_path, name, data if data is not None else _encrypted_pdf())
    with pytest.raises(AppError, match=message) as info:
        handlers.read_documents([write(tmp_path, "fine.txt", OTHER), path], max_bytes=2000)
    assert "\n" not in str(info.value)
    assert handlers.bank_stats(session) == before
    with pytest.raises(AppError, match="Choose"):
        handlers.read_documents([])


def test_stop_keeps_what_was_read_and_frees_the_session(model, tmp_path):
    session = Session()
    docs = handlers.read_documents([write(tmp_path, "a.txt", BOOK * 3)])
    seen = []

    def progress(p):
        seen.append(p)
        if p.done > 0:
            raise Stopped()
    report = handlers.memorize(model, session, docs, capacity=CAPACITY, progress=progress)
    assert report.stopped and report.documents == []
    assert 0 < len(session.bank) < seen[-1].total
    assert not session.busy.locked()
    assert "Stopped" in views.memorize_done(report, handlers.bank_stats(session))
    assert finish(handlers.chat(model, session, "Who is Filby?", max_new_tokens=2)).done


def test_bad_bank_settings_are_refused(model, tmp_path):
    docs = handlers.read_documents([write(tmp_path, "a.txt", BOOK)])
    with pytest.raises(AppError, match="Chunk size"):
        handlers.memorize(model, Session(), docs, chunk_size=3)
    assert handlers.chunk_size_choices(model) == [1, 2, 4]


def test_settings_apply_to_a_new_bank_only(model, tmp_path):
    session = filled(model, tmp_path)
    docs = handlers.read_documents([write(tmp_path, "b.txt", OTHER)])
    handlers.memorize(model, session, docs, chunk_size=4, capacity=8192)
    assert (session.bank.chunk_size, session.bank.capacity) == (model.cfg.chunk_size, CAPACITY)
    handlers.clear(session)
    handlers.memorize(model, session, docs, chunk_size=4, capacity=8192)
    assert (session.bank.chunk_size, session.bank.capacity) == (4, 8192)


# -- chat --

def test_chat_streams_and_shows_retrieved_chunks_in_context(model, tmp_path):
    session = filled(model, tmp_path)
    snapshots = [(s.answer, s.done) for s in handlers.chat(model, session, "Who is Filby?", search_top=3, max_new_tokens=6,
                                                           mode="fusion")]
    assert [done for _, done in snapshots] == [False] * (len(snapshots) - 1) + [True] and len(snapshots) >= 2
    assert [a for a, _ in snapshots[:-1]] == sorted(a for a, _ in snapshots[:-1])  # the answer only grows
    last = finish(handlers.chat(model, session, "Who is Filby?", search_top=3, max_new_tokens=6, mode="fusion"))
    assert last.memory_tokens == len(session.bank) and 0 < last.memory_share <= 1
    assert 0 < len(last.retrieved) <= 3
    for r in last.retrieved:
        assert r["text"] == BOOK[r["char_start"]:r["char_end"]]
        assert BOOK[:r["char_start"]].endswith(r["before"]) and BOOK[r["char_end"]:].startswith(r["after"])
    assert session.last_retrieved == [r["chunk_id"] for r in last.retrieved]
    assert sum(session.heat.values()) == pytest.approx(2.0)  # each question adds one unit of retrieval
    assert session.turns[-1] == {"question": "Who is Filby?", "answer": last.answer, "backbone_answer": None, "quote": None,
                                 "short": False}
    html = views.retrieved(last.to_dict(), untrained=True)
    assert html.count('class="lm-chunk"') == len(last.retrieved) and "untrained" in html


@pytest.mark.parametrize("mode", ["cache", "read_back"])
def test_chat_in_a_training_free_mode_lists_what_the_search_found(model, tmp_path, mode):
    """The default mode and read-back: the chunks listed are the search's for the question, in its order, each in
    its text; read-back shows exactly what it put in the prompt."""
    session = filled(model, tmp_path)
    last = finish(handlers.chat(model, session, "Who is Filby?", search_top=3, max_new_tokens=6, mode=mode))
    assert last.mode == mode and 0 < len(last.retrieved) <= 3
    scores = [r["score"] for r in last.retrieved]
    assert scores == sorted(scores, reverse=True)
    for r in last.retrieved:
        assert r["text"] == BOOK[r["char_start"]:r["char_end"]]
    assert sum(session.heat.values()) == pytest.approx(1.0)
    assert bool(last.context) == (mode == "read_back")
    if last.context:
        assert all(r["text"] in last.context for r in last.retrieved)
    html = views.retrieved(last.to_dict())
    assert f"<b>{mode}</b>" in html and "search score" in html


def test_a_sentence_answer_is_shown_once_as_its_quote_and_a_short_one_above_it():
    """The conversation shows a short answer with the sentence it was copied from under it; an answer that is the
    quoted sentence itself (the backbone was not sure of a shorter one) appears once, as the quote, and the panel
    says why."""
    from app.components.chat import messages
    quote = {"text": "The pass key is 4417.", "citation": "notes.txt"}
    turns = [{"question": "Key?", "answer": "4417", "backbone_answer": None, "quote": quote, "short": True},
             {"question": "Key?", "answer": "The pass key is 4417.", "backbone_answer": None, "quote": quote,
              "short": False}]
    short, whole = [m["content"] for m in messages(turns) if m["role"] == "assistant"]
    assert short.startswith("4417") and "\u201cThe pass key is 4417.\u201d" in short and "notes.txt" in short
    assert whole.startswith("> \u201cThe pass key is 4417.\u201d") and whole.count("4417") == 1
    assert "The answer is this sentence" in views.retrieved({"memory_tokens": 9, "mode": "quote", "quote": quote,
                                                   "short": False})
    assert "rests on this sentence" in views.retrieved({"memory_tokens": 9, "mode": "quote", "quote": quote,
                                                        "short": True})


def test_a_retrieved_chunk_is_marked_in_whole_words():
    from app.views.chat import whole_words
    chunk = {"source": "geometry.pdf", "char_start": 40, "char_end": 48, "text": ".7 (body", "score": 0.04,
             "before": "the default horizontal margin. scale=0", "after": " is 0.7 x paper"}
    html = views.retrieved({"memory_tokens": 9, "mode": "quote", "retrieved": [chunk]})
    assert "<mark>scale=0.7 (body</mark> is 0.7" in html  # a chunk starting inside a word marks the whole word
    assert whole_words("the ", "scale", " is") == ("the ", "scale", " is")  # whole already: unchanged


def test_each_retrieved_chunk_says_which_search_found_it():
    chunk = {"source": "b.txt", "char_start": 0, "char_end": 5, "text": "Hello", "score": 0.1}
    html = views.retrieved({"memory_tokens": 9, "mode": "quote", "retrieved": [
        {**chunk, "found_by": "meaning"}, {**chunk, "found_by": "hybrid"}, chunk]})
    assert "found by the meaning search" in html and "found by words (BM25) and the memory" in html
    assert html.count("· found by") == 2  # a chunk no search named says nothing


def test_the_banner_names_the_meaning_search_where_the_checkpoint_trained_it():
    from app.components.header import trained_summary
    assert "by meaning" not in trained_summary({"search"})
    assert "by meaning" in trained_summary({"search", "meaning"})
    assert "Not trained: the memory layer" in trained_summary({"search", "meaning"})


def test_chat_refuses_an_unknown_mode(model, tmp_path):
    session = filled(model, tmp_path)
    with pytest.raises(AppError, match="Unknown answer mode"):
        finish(handlers.chat(model, session, "Who?", mode="telepathy"))


def test_compare_adds_the_backbone_alone(model, tmp_path):
    session = filled(model, tmp_path)
    last = finish(handlers.chat(model, session, "Who is Filby?", compare=True, max_new_tokens=5))
    alone = model.generate(model.chat_ids("Who is Filby?"), None, max_new_tokens=5, backbone_only=True)
    list(alone)
    assert last.backbone_answer == alone.text


def test_chat_on_empty_memory_uses_the_backbone(model):
    session = Session()
    last = finish(handlers.chat(model, session, "hello", max_new_tokens=3))
    assert last.retrieved == [] and last.memory_tokens == 0 and last.memory_share == 0
    assert "Memory is empty" in views.retrieved(last.to_dict())
    with pytest.raises(AppError, match="question"):
        finish(handlers.chat(model, session, "   "))


def test_a_busy_session_refuses_a_second_request(model, shared):
    session = shared
    with session.busy:
        with pytest.raises(AppError, match="busy"):
            finish(handlers.chat(model, session, "Who?"))
        with pytest.raises(AppError, match="busy"):
            handlers.clear(session)


def test_sessions_never_see_each_other(model, tmp_path):
    a = filled(model, tmp_path, BOOK, "a.txt")
    b = filled(model, tmp_path, OTHER, "b.txt")
    for session, text in ((a, BOOK), (b, OTHER)):
        last = finish(handlers.chat(model, session, "Who came in?", max_new_tokens=3))
        assert last.retrieved and all(r["text"] in text and r["source"] == session.bank.sources[0]["name"]
                                      for r in last.retrieved)
    assert a.bank is not b.bank


# -- keeping and sharing a bank --

def test_save_and_load_a_bank(model, shared, tmp_path):
    session = shared
    path = handlers.save_bank(session, tmp_path / "out")
    assert path.suffix == ".zip"
    fresh = Session()
    stats = handlers.load_bank(model, fresh, path)
    assert stats == handlers.bank_stats(session)
    for cid in session.bank.chunk_ids:
        assert fresh.bank.chunk_info(cid) == session.bank.chunk_info(cid)
    with pytest.raises(AppError, match="empty"):
        handlers.save_bank(Session(), tmp_path)


def test_a_bank_of_another_backbone_is_refused(model, shared, tiny_backbones, tmp_path):
    other = LongMemModel(preset("tiny-gpt2"), backbone=tiny_backbones["tiny-gpt2"])
    path = handlers.save_bank(filled(other, tmp_path, OTHER), tmp_path / "gpt2")
    session = shared
    before = handlers.bank_stats(session)
    with pytest.raises(AppError, match="another backbone"):
        handlers.load_bank(model, session, path)
    assert handlers.bank_stats(session) == before


def _zip(tmp_path, name, files):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
    return path


@pytest.mark.parametrize("files,message", [
    ({"notes.txt": "hello"}, "not a memory bank saved by LongMem Studio"),
    ({"meta.json": "{}", "tensors.safetensors": b"x", "../evil": "x"}, "contains a folder or path"),
    ({"meta.json": json.dumps({"format": 1}), "tensors.safetensors": b"garbage"}, "meta.json lacks n_kv_heads"),
])
def test_broken_bank_files_are_refused(model, shared, tmp_path, files, message):
    session = shared
    before = handlers.bank_stats(session)
    with pytest.raises(AppError, match=message):
        handlers.load_bank(model, session, _zip(tmp_path, "bad.zip", files))
    with pytest.raises(AppError, match="not a .zip"):
        handlers.load_bank(model, session, write(tmp_path, "plain.zip", b"not a zip at all"))
    assert handlers.bank_stats(session) == before


def test_clear_forgets_everything(model, tmp_path):
    session = filled(model, tmp_path)
    finish(handlers.chat(model, session, "Who?", max_new_tokens=2))
    handlers.clear(session)
    assert handlers.bank_stats(session)["tokens"] == 0 and session.turns == [] and session.heat == {}


# -- classification --

DEMOS = ("text,label\n" + "\n".join(
    f'"{t}",{label}' for t, label in [("a fine and moving film", "positive"), ("dull and too long", "negative"),
                                      ("the cast is wonderful", "positive"), ("a tedious mess", "negative"),
                                      ("warm and funny", "positive"), ("i hated every minute", "negative")]) + "\n")


def test_classify_a_text_in_the_default_mode_against_in_context_only(model, tmp_path):
    session = Session()
    demos = handlers.demonstration_set(handlers.UPLOADED_SET, write(tmp_path, "d.csv", DEMOS))
    loaded = handlers.load_demonstrations(model, session, demos, capacity=CAPACITY)
    assert handlers.load_demonstrations(model, session, demos, capacity=CAPACITY) is loaded  # kept, not re-read
    result = handlers.classify_text(model, session, "a warm film", k=2, top=3)
    mode = icl_modes.DEFAULT_MODE
    assert result["mode"] == mode and result["k"] == 2 and result["demonstrations"] == 6
    for key in ("probabilities", "probabilities_in_context_only", "probabilities_memory"):
        assert sum(result[key].values()) == pytest.approx(1.0)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
    assert result["label_in_context_only"] == max(result["probabilities_in_context_only"],
                                                  key=result["probabilities_in_context_only"].get)
    # the same predictions as the library's classifier and the plain in-context baseline on the same random prompt
    context = icl.context_text(demos.template, icl.sample_context(demos.examples, 2, icl.DEFAULT_SEED))
    direct = icl_modes.ModeClassifier(model, loaded.labels, demos.template, context, loaded.bank, loaded.memory,
                                      (mode,), 2, MODE.neighbours).predict("a warm film",
                                                                                (mode, *SELECTION.candidates))
    assert result["label"] == direct[mode].label
    assert result["probabilities"] == pytest.approx(handlers.classify._probabilities(direct[mode].scores))
    alone = icl.classify(model, "a warm film", loaded.labels, context=context, template=demos.template)
    assert result["label_in_context_only"] == alone.label
    assert result["probabilities_in_context_only"] == pytest.approx(handlers.classify._probabilities(alone.scores),
                                                                    abs=1e-4)
    assert len(result["nearest"]) == 3 and 0 < len(result["retrieved"]) <= 3
    assert [d["cosine"] for d in result["nearest"]] == sorted((d["cosine"] for d in result["nearest"]), reverse=True)
    for d in result["nearest"] + result["retrieved"]:
        assert (d["text"], d["label"]) in loaded.memory.examples
    html = views.classification(result)
    assert "beyond the paper" in html and "In context only (2 random demonstrations)" in html
    assert "Demonstrations nearest in memory" in html and "Demonstrations retrieved" in html
    # what the default learned, why, the combination's and each candidate's held-out accuracy; 6 demonstrations are few
    chosen = result["selection"]
    choices = {*SELECTION.candidates, "combined"}
    assert chosen["chosen"] in choices and set(chosen["accuracy"]) == choices
    assert chosen["held_out"] == 4 and chosen["few"] and result["label"] == direct[mode].label
    used = "the learned combination" if chosen["chosen"] == "combined" else chosen["chosen"]
    assert f"How the default classifies: {used}" in html and "rests on few examples" in html
    assert "held-out accuracy" in html and "macro-F1" in html and "Learned weights" in html


def test_a_text_is_read_once_for_its_key(model, tmp_path, monkeypatch):
    session = Session()
    loaded = handlers.load_demonstrations(model, session, handlers.demonstration_set(
        handlers.UPLOADED_SET, write(tmp_path, "d.csv", DEMOS)), capacity=CAPACITY)
    handlers.classify_text(model, session, "a warm film", k=2, top=3)  # builds the classifier
    read, real = [], key_scores.text_key
    monkeypatch.setattr(key_scores, "text_key", lambda *a: read.append(a[1]) or real(*a))
    result = handlers.classify_text(model, session, "a dull film", k=2, top=3)
    assert read == ["a dull film"]  # one key for the modes and the nearest demonstrations
    # the nearest demonstrations are still those of the text's own key
    keys = loaded.classifier.modes.centred
    query = key_scores.centre_query(keys, real(model, "a dull film", loaded.template))
    assert [(d["index"], d["cosine"]) for d in result["nearest"]] == \
        [(i, round(sim, 6)) for i, sim in key_scores.nearest(keys, query, 3)]


def test_the_classifier_is_built_once_per_set_and_k(model, tmp_path):
    session = Session()
    loaded = handlers.load_demonstrations(model, session, handlers.demonstration_set(
        handlers.UPLOADED_SET, write(tmp_path, "d.csv", DEMOS)), capacity=CAPACITY)
    first = handlers.classify_text(model, session, "a warm film", k=2)
    built = loaded.classifier
    assert built is not None and built.key == (2, icl.DEFAULT_SEED, None)
    assert handlers.classify_text(model, session, "a warm film", k=2) == first  # the same answer, not rebuilt
    handlers.classify_rows(model, session, [("nice", None)], k=2)
    assert loaded.classifier is built
    handlers.classify_text(model, session, "a warm film", k=3)
    assert loaded.classifier is not built and loaded.classifier.key == (3, icl.DEFAULT_SEED, None)
    none = handlers.classify_text(model, session, "a warm film", k=0)  # no demonstrations in the prompt
    assert none["k"] == 0 and none["label"] in loaded.labels and loaded.classifier.memory_cache is None


def test_classify_a_labelled_test_file(model, tmp_path):
    session = Session()
    handlers.load_demonstrations(model, session, handlers.demonstration_set(
        handlers.UPLOADED_SET, write(tmp_path, "d.csv", DEMOS)), capacity=CAPACITY)
    rows = handlers.read_test_file(write(tmp_path, "t.jsonl", '{"text": "great fun", "label": "positive"}\n'
                                                             '{"text": "so boring", "label": "negative"}\n'))
    seen = []
    result = handlers.classify_rows(model, session, rows, k=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]
    gold = [label for _, label in rows]
    assert result["labelled"] and result["n"] == 2 and result["mode"] == icl_modes.DEFAULT_MODE
    for column, key in [("default", "accuracy_default"), ("in_context_only", "accuracy_context"),
                        ("with_memory", "accuracy_memory"), ("knn", "accuracy_knn")]:
        assert result[key] == sum(r[column] == g for r, g in zip(result["rows"], gold)) / 2
    for row in result["rows"]:  # a row gets what the same text gets on its own
        one = handlers.classify_text(model, session, row["text"], k=2)
        assert (row["default"], row["in_context_only"], row["with_memory"]) == \
            (one["label"], one["label_in_context_only"], one["label_memory"])
    html = views.accuracy(result)
    assert "beyond the paper" in html and "In context only" in html and "Paper: memory layer" in html
    assert result["selection"]["chosen"] in {*SELECTION.candidates, "combined"} and result["seconds"] > 0
    assert result["added_time"] == pytest.approx(result["selection"]["seconds"] / result["seconds"])
    assert "How the default classifies" in html and "so learning added" in html
    unlabelled = handlers.read_test_file(write(tmp_path, "u.csv", "text\nnice\nawful\n"))
    assert unlabelled == [("nice", None), ("awful", None)]
    result = handlers.classify_rows(model, session, unlabelled, k=2)
    assert not result["labelled"] and result["accuracy_default"] is None and result["accuracy_context"] is None
    assert "no label column" in views.accuracy(result)


def test_bundled_demonstration_sets_and_test_files():
    for choice, (_, task, _) in handlers.DEMONSTRATION_SETS.items():
        demos = handlers.demonstration_set(choice)
        assert 200 <= len(demos.examples) <= 500 and demos.template == handlers.icl.template_for(task)
        assert len(handlers.icl.label_set(demos.examples)) == 2
        rows = handlers.read_test_file(demos.test_file)
        assert rows and all(label in handlers.icl.label_set(demos.examples) for _, label in rows)


@pytest.mark.parametrize("name,data,message", [
    ("nolabel.csv", "text,sentiment\ngood,positive\n", "no 'label' column"),
    ("binary.csv", b"\xff\xfe\x00\x01binary\x00data", "binary file"),
    ("ragged.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', "row 2 has no label"),
    ("one.csv", "text,label\ngood,positive\nbad,positive\n", "two different labels"),
    ("notes.txt", "text,label\n", "unsupported file type"),
])
def test_bad_demonstration_files_are_refused(tmp_path, name, data, message):
    with pytest.raises(AppError, match=message):
        handlers.demonstration_set(handlers.UPLOADED_SET, write(tmp_path, name, data))
    with pytest.raises(AppError, match="over the limit"):
        handlers.demonstration_set(handlers.UPLOADED_SET, write(tmp_path, "d2.csv", DEMOS), max_bytes=10)


def test_classify_needs_demonstrations_first(model):
    with pytest.raises(AppError, match="demonstration set first"):
        handlers.classify_text(model, Session(), "nice")


# -- sessions, views, settings, background work --

def test_registry_frees_a_closed_session():
    registry = SessionRegistry()
    session = registry.open(None, "abc")
    session.bank = object()
    assert registry.open(session, "abc") is session and len(registry) == 1
    assert registry.close("abc") and session.bank is None and session.closed
    assert not registry.close("abc") and len(registry) == 0
    assert registry.open(session, "abc") is not session  # a closed session is never reused


def test_views_escape_document_text(model, tmp_path):
    session = filled(model, tmp_path, "<script>alert(1)</script> hello " * 6, "<img src=x onerror=alert(1)>.txt")
    html = views.memory_map(session.bank, {}, [])
    stats_html = views.bank_summary(handlers.bank_stats(session))
    for fragment in (html, stats_html):
        assert "<script>" not in fragment and "<img" not in fragment
    last = finish(handlers.chat(model, session, "hi", max_new_tokens=2))
    assert "<script>" not in views.retrieved(last.to_dict())


def test_memory_map_marks_heat_and_the_latest_answer(model, tmp_path):
    session = filled(model, tmp_path)
    empty = views.memory_map(session.bank, {}, [])
    last = finish(handlers.chat(model, session, "Who is Filby?", max_new_tokens=3))
    html = views.memory_map(session.bank, session.heat, session.last_retrieved)
    assert html.count("(latest answer)") == len(last.retrieved) and "(latest answer)" not in empty
    assert "of retrieval" in html and "Memory is empty" in views.memory_map(None, {}, [])
    xy = views.project_keys(session.bank.chunk_keys())
    assert xy.shape == (session.bank.n_chunks, 2)


def test_memory_map_has_a_page_axis_and_labels_the_latest_answers_chunks(model):
    text = "The harbour boat is green. " * 20 + "The lighthouse was built in 1887. " * 20
    bank = model.new_bank(capacity=4096)
    pages = [0, len(text) // 2]
    model.memorize(text, bank, source="manual.pdf", pages=pages, page_labels=["iv", "12"])
    last = [int(bank.chunk_ids[-1])]
    html = views.memory_map(bank, {}, last)
    assert 'class="lm-axis"' in html and ">p. iv<" in html and ">p. 12<" in html
    assert ">p. 12</text>" in html  # the latest answer's chunk, labelled with its page in the projection
    plain = model.new_bank(capacity=4096)
    model.memorize(text, plain, source="book.txt")
    assert ">50%<" in views.memory_map(plain, {}, [])  # no pages: positions


def test_settings_validate():
    assert AppSettings.from_kwargs(search_top=3).search_top == 3
    with pytest.raises(TypeError, match="unknown app settings"):
        AppSettings.from_kwargs(topk=3)
    with pytest.raises(ValueError):
        AppSettings(temperature=-1)


def test_stream_reports_then_returns_and_stops_when_closed():
    def work(report):
        for i in range(3):
            report(i)
        return "done"
    assert list(stream(work)) == [0, 1, 2, Done("done")]

    stopped = threading.Event()

    def endless(report):
        try:
            while True:
                report("tick")
        except Stopped:
            stopped.set()
            raise
    it = stream(endless)
    assert next(it) == "tick"
    it.close()  # what Gradio does when a run is cancelled
    assert stopped.is_set()

    def failing(report):
        raise AppError("bad input")
    with pytest.raises(AppError, match="bad input"):
        list(stream(failing))


def test_retrieval_width_setting_rounds_to_whole_chunks():
    from longmem_core import MemoryBank
    bank = MemoryBank(n_kv_heads=2, head_dim=8, chunk_size=4)
    assert handlers.retrieval_width(None, bank) is None and handlers.retrieval_width(16, None) is None
    assert handlers.retrieval_width(16, bank) == 16 and handlers.retrieval_width(10, bank) == 12
    assert handlers.retrieval_width(1, bank) == 4


def test_chat_uses_the_retrieval_width_setting(model, tmp_path):
    session = filled(model, tmp_path)
    widths = []
    real = model.generate

    def spy(*args, **kwargs):
        widths.append(kwargs.get("top_k"))
        return real(*args, **kwargs)
    model.generate = spy
    try:
        finish(handlers.chat(model, session, "Who is Filby?", max_new_tokens=2, top_k=2 * session.bank.chunk_size,
                             mode="fusion"))
        finish(handlers.chat(model, session, "Who is Filby?", max_new_tokens=2, mode="fusion"))
    finally:
        del model.generate
    assert widths == [2 * session.bank.chunk_size, None]


def test_reading_builds_the_copy_cache_so_the_first_question_does_not(model, tmp_path):
    from longmem_core.answer import neural_cache
    session = Session()
    docs = handlers.read_documents([write(tmp_path, "a.txt", BOOK)])
    handlers.memorize(model, session, docs, chunk_size=2, capacity=CAPACITY)
    cache = neural_cache.cache_for(session.bank)
    assert cache is not None and len(cache) > 0
    assert neural_cache.cache_from_sources(model, session.bank) is cache  # the first question reuses it
