"""eval-niah: rows per (task, length, mode), RULER scoring and needle recall, new modes picked up, the CLI."""
import json

import pytest

from conftest import BOOK
from longmem_core.answer import answer as answers
from longmem_core.evals import eval_niah
from longmem_core.model.model import Retrieved
from longmem_core.evals.needles import TASKS, Needle, Trial, even_depths
from test_cli import run

ROW_KEYS = {"task", "length", "mode", "accuracy", "retrieval_recall", "trials"}


def trial_with(spans):
    needles = [Needle("a-b", "1234567", 0.0, s, e) for s, e in spans]
    return Trial("multivalue", 100, 0.0, "x" * 100, needles, list(range(len(needles))), "q?", [])


def test_needle_recall_counts_overlapping_chunks():
    t = trial_with([(10, 20), (50, 60)])
    assert eval_niah.needle_recall(t, []) == 0.0
    assert eval_niah.needle_recall(t, [(19, 23)]) == 0.5  # touches the first needle's last character
    assert eval_niah.needle_recall(t, [(20, 50)]) == 0.0  # between them: half-open spans do not overlap
    assert eval_niah.needle_recall(t, [(0, 11), (55, 56)]) == 1.0


def test_default_modes_are_every_answer_mode_and_bm25(monkeypatch):
    assert eval_niah.parse_modes(None) == [*answers.MODES, "bm25"]
    monkeypatch.setattr(answers, "MODES", (*answers.MODES, "new_mode"))
    assert "new_mode" in eval_niah.parse_modes(None) and eval_niah.parse_modes("new_mode,bm25") == ["new_mode", "bm25"]
    with pytest.raises(ValueError, match="unknown mode"):
        eval_niah.parse_modes("fusion,nope")


@pytest.fixture()
def oracle_mode(monkeypatch):
    """A mode that lists the chunks holding the asked needles and answers with their values: scores must be 1."""
    real = answers.answer

    def answer(model, bank, question, *, mode=answers.DEFAULT_MODE, max_new_tokens=64, search_top=6, answer_prefix=""):
        if mode != "oracle":
            return real(model, bank, question, mode=mode, max_new_tokens=max_new_tokens, search_top=search_top,
                        answer_prefix=answer_prefix)
        doc = bank.sources[0]["text"]
        import re
        values, chunks = [], []
        for m in re.finditer(r"One of the special magic numbers for (\S+) is: (\d+)\.", doc):
            if m.group(1) in question:
                values.append(m.group(2))
                for cid in bank.chunk_ids:
                    info = bank.chunk_info(int(cid))
                    if info.char_start < m.end() and m.start() < info.char_end:
                        chunks.append(Retrieved(info, 1.0))
                        break
        return answers.Answer(mode, "The numbers: " + ", ".join(values), chunks[:search_top])
    monkeypatch.setattr(answers, "MODES", (*answers.MODES, "oracle"))
    monkeypatch.setattr(answers, "answer", answer)


def test_rows_and_scores(make_model, oracle_mode):
    model = make_model("tiny", capacity=64)
    text = BOOK.read_text(encoding="utf-8")
    modes = eval_niah.parse_modes(None)
    rows = eval_niah.evaluate(model, text, [300, 500], list(TASKS), 3, modes, search_top=6, max_new_tokens=4)
    assert len(rows) == len(TASKS) * 2 * len(modes)
    assert {(r["task"], r["length"], r["mode"]) for r in rows} == {
        (t, n, m) for t in TASKS for n in (300, 500) for m in modes}
    for r in rows:
        assert set(r) >= ROW_KEYS and r["trials"] == 3
        assert [p["depth"] for p in r["per_trial"]] == [round(d, 4) for d in even_depths(3)]
        assert 0 <= r["retrieval_recall"] <= 1
        if r["mode"] == "bm25":
            assert r["accuracy"] is None
        else:
            assert 0 <= r["accuracy"] <= 1
        if r["mode"] == "oracle":
            assert r["accuracy"] == 1.0 and r["retrieval_recall"] == 1.0
        if r["mode"] == "backbone":
            assert r["retrieval_recall"] == 0.0  # local context only: it lists nothing


def test_trials_are_reproducible(make_model):
    model = make_model("tiny", capacity=64)
    text = BOOK.read_text(encoding="utf-8")
    a = eval_niah.evaluate(model, text, [300], ["multiquery"], 2, ["bm25"], seed=3)
    seen = []
    b = eval_niah.evaluate(model, text, [300], ["single", "multiquery"], 2, ["bm25"], seed=3, on_row=seen.append)
    assert a[0] == b[1]  # a task's trials do not depend on which other tasks run
    assert seen == b  # every row is handed out as soon as it is complete (--rows-out)


def test_cli_json(tmp_path):
    proc = run("eval-niah", "--lengths", "300", "--tasks", "single,multivalue", "--trials", "2",
               "--max-new-tokens", "4", "--backbone", "tiny-llama", "--json")
    out = json.loads(proc.stdout)
    assert out["default_mode"] == answers.DEFAULT_MODE and out["command"].startswith("python -m longmem_core eval-niah")
    assert {r["mode"] for r in out["rows"]} == {*answers.MODES, "bm25"} and len(out["rows"]) == 2 * (len(answers.MODES) + 1)
    assert all(set(r) >= ROW_KEYS for r in out["rows"])
    assert "eval-niah" in proc.stderr  # the progress bar


def test_cli_bad_arguments_one_error_line():
    for args in (["--tasks", "nope"], ["--modes", "nope"], ["--text", "/nope.txt"], ["--lengths", "0"]):
        proc = run("eval-niah", *args, "--backbone", "tiny-llama", check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
