"""The app served on loopback with a tiny model, driven through gradio_client: stable API names, a load test
with concurrent sessions, bad input over the API, cancelling, and memory freed when a session closes."""
import time
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.ui import build_demo, launch_options
from longmem_core import LongMemModel, preset
from longmem_core.classify import icl_modes

SESSIONS = 5  # concurrent clients in the load test
DEADLINE_S = 240  # the load test fails if its sessions take longer than this in all


@pytest.fixture(scope="module")
def served(tiny_backbones):
    model = LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"])
    demo = build_demo(model, capacity=4096, max_new_tokens=8, concurrency=2)
    assert isinstance(demo, gr.Blocks)
    demo.launch(**launch_options(demo.longmem.settings, server_name="127.0.0.1", prevent_thread_lock=True,
                                 quiet=True, inbrowser=False))
    yield demo
    demo.close()


def client(demo) -> Client:
    return Client(demo.local_url, verbose=False)


def memorize(c: Client, path) -> dict:
    status, _summary, stats, _map = c.predict(files=[handle_file(str(path))], api_name="/memorize")
    assert "Read into memory" in status
    return stats


def ask(c: Client, question: str) -> dict:
    _chat, _question, _html, answer, _map = c.predict(question, api_name="/chat")
    return answer


def wait_until(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def test_api_names_are_stable(served):
    c = client(served)
    names = set(c.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/memorize", "/chat", "/classify", "/clear"} <= names
    c.close()


def test_concurrent_sessions_fill_memory_and_chat_without_seeing_each_other(served, tmp_path):
    texts = {i: f"Session {i} remembers the word {word}. " * 12
             for i, word in enumerate(["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet"][:SESSIONS])}
    for i, text in texts.items():
        (tmp_path / f"doc{i}.txt").write_text(text, encoding="utf-8")

    def one_session(i: int) -> tuple[int, dict, list[dict], dict]:
        c = client(served)
        try:
            stats = memorize(c, tmp_path / f"doc{i}.txt")
            answers = [ask(c, "Which word do you remember?"), ask(c, "Say it again.")]
            cleared = c.predict(api_name="/clear")
            return i, stats, answers, cleared[2]
        finally:
            c.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        results = [f.result(timeout=DEADLINE_S) for f in [pool.submit(one_session, i) for i in texts]]
    assert time.monotonic() - t0 < DEADLINE_S
    for i, stats, answers, cleared in results:
        assert [s["name"] for s in stats["sources"]] == [f"doc{i}.txt"]
        assert stats["tokens"] == len(texts[i].encode("utf-8"))  # the tiny model reads bytes
        for answer in answers:
            assert answer["done"] and answer["memory_tokens"] == stats["tokens"] and answer["retrieved"]
            for chunk in answer["retrieved"]:
                assert chunk["source"] == f"doc{i}.txt" and chunk["text"] in texts[i]
        assert cleared["tokens"] == 0
    assert wait_until(lambda: len(served.longmem.sessions) == 0, 45), "closed sessions were not freed"


def test_bad_input_over_the_api_keeps_memory(served, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("The lighthouse keeper counted ships. " * 8, encoding="utf-8")
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    c = client(served)
    try:
        stats = memorize(c, good)
        with pytest.raises(AppError, match="binary"):
            c.predict(files=[handle_file(str(binary))], api_name="/memorize")
        with pytest.raises(AppError, match="Type a question"):
            c.predict("  ", api_name="/chat")
        answer = ask(c, "What did the keeper count?")
        assert answer["memory_tokens"] == stats["tokens"]
        assert all(ch["source"] == "good.txt" for ch in answer["retrieved"])
    finally:
        c.close()


def test_classify_over_the_api_in_the_default_mode_against_in_context_only(served, tmp_path):
    demos = tmp_path / "demos.csv"
    demos.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in [
        ("a fine film", "positive"), ("dull and long", "negative"), ("warm and funny", "positive"),
        ("a tedious mess", "negative")]), encoding="utf-8")
    test = tmp_path / "test.csv"
    test.write_text("text,label\ngreat fun,positive\nso boring,negative\n", encoding="utf-8")
    c = client(served)
    try:
        outputs = c.predict(choice="My uploaded file", upload=handle_file(str(demos)), k=2, text="a warm film",
                            test_file=handle_file(str(test)), api_name="/classify")
        status, result = outputs[0], outputs[5]
        assert "Done: 4 demonstrations in memory, 2 in context" in status
        one, many = result["text"], result["file"]
        assert one["mode"] == icl_modes.DEFAULT_MODE and "beyond the paper" in outputs[2]
        assert one["label"] in ("positive", "negative") and one["label_in_context_only"] in ("positive", "negative")
        assert many["n"] == 2 and many["labelled"] and many["mode"] == icl_modes.DEFAULT_MODE
        assert {"accuracy_default", "accuracy_context", "accuracy_memory", "accuracy_knn"} <= set(many)
        assert [r["default"] for r in many["rows"]] and "beyond the paper" in outputs[3]
        assert one["selection"]["chosen"] == many["selection"]["chosen"] and "How the default classifies" in outputs[2]
        assert set(many["selection"]["accuracy"]) >= {"knn", "centroid_context"} and many["added_time"] > 0
    finally:
        c.close()


def test_cancelling_a_reading_keeps_the_session_usable(served, tmp_path, book_text):
    big = tmp_path / "big.txt"
    big.write_text(book_text[:60_000], encoding="utf-8")  # ~4,000 segments of the tiny model: minutes
    c = client(served)
    try:
        job = c.submit(files=[handle_file(str(big))], when_full="drop_oldest",  # over this server's 4,096 tokens
                       api_name="/memorize")
        assert wait_until(lambda: len(job.outputs()) >= 3, 60)  # started, and read a few segments
        job.cancel()
        answers = []

        def answered() -> bool:  # the reading stops at its next segment; then the session answers again
            try:
                answers.append(ask(c, "What was read?"))
                return True
            except AppError as exc:
                assert "busy" in str(exc)
                return False
        assert wait_until(answered, 30)
        assert 0 < answers[0]["memory_tokens"] < 60_000
    finally:
        c.close()


def test_reading_past_the_capacity_over_the_api_says_what_would_be_dropped(served, tmp_path, book_text):
    """Issue 29: nothing is dropped without the person being told; the choice is the memorize API's when_full."""
    big = tmp_path / "long.txt"
    big.write_text(book_text[:5_000], encoding="utf-8")  # over this server's capacity of 4,096 tokens
    c = client(served)
    try:
        with pytest.raises(AppError, match=r"do not fit.*would drop .*the first \d[\d,]* tokens of long\.txt"):
            memorize(c, big)
        _status, _summary, stats, _map = c.predict(files=[handle_file(str(big))], when_full="fit",
                                                   api_name="/memorize")
        assert 0 < stats["tokens"] <= 4_096 and "dropped" not in stats["sources"][0]
    finally:
        c.close()
