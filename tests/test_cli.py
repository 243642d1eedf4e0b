"""The CLI end to end through subprocesses, on the tiny random backbones."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from pdf_util import make_pdf


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "longmem_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def bank(tmp_path_factory, book_text):
    d = tmp_path_factory.mktemp("cli")
    book = d / "book.txt"
    book.write_text(book_text[:4000], encoding="utf-8")
    pdf = d / "note.pdf"
    pdf.write_bytes(make_pdf(["The pass key is 4071."]))
    out = json.loads(run("memorize", str(book), str(pdf), "--bank", str(d / "bank"), "--backbone", "tiny-llama",
                         "--json").stdout)
    return d / "bank", out, book_text[:4000]


def test_memorize_json(bank):
    path, out, _ = bank
    assert set(out) >= {"tokens", "chunks", "seconds"}
    assert out["tokens"] > 4000 and out["chunks"] >= out["tokens"] // 4  # 4 tokens per chunk (default)
    assert (path / "meta.json").exists()


def test_retrieve_json_items_point_at_exact_text(bank):
    path, _, text = bank
    out = json.loads(run("retrieve", "--bank", str(path), "Time Traveller", "--top", "4", "--backbone",
                         "tiny-llama", "--json").stdout)
    items = out["retrieved"]
    assert 1 <= len(items) <= 4
    for item in items:
        assert set(item) >= {"chunk_id", "source", "char_start", "char_end", "text", "score"}
        if item["source"] == "book.txt":
            assert text[item["char_start"]:item["char_end"]] == item["text"]
        else:
            assert item["source"] == "note.pdf"


def test_ask_json(bank):
    path, _, _ = bank
    out = json.loads(run("ask", "--bank", str(path), "Who is the Time Traveller?", "--max-new-tokens", "4",
                         "--backbone", "tiny-llama", "--json").stdout)
    assert isinstance(out["answer"], str) and isinstance(out["retrieved"], list) and out["retrieved"]
    assert out["mode"] == "quote"  # the default: an answer copied from the sentence quoted, or "not found"
    if out["quote"] is not None:
        assert out["answer"] in out["quote"]["text"] and out["quote"]["citation"].startswith(out["quote"]["source"])
    else:
        assert out["answer"] == "I did not find this in what I read."


def test_ask_names_the_memory_share_only_where_the_memory_layer_runs(bank):
    path, _, _ = bank
    ask = ("ask", "--bank", str(path), "Who is the Time Traveller?", "--max-new-tokens", "2", "--backbone", "tiny-llama")
    assert "memory share" not in run(*ask).stdout  # the quote mode reads back; no memory layer runs
    assert "memory share of the memory layer's output" in run(*ask, "--mode", "fusion").stdout


def test_plain_output_lists_chunks(bank):
    path, _, _ = bank
    proc = run("retrieve", "--bank", str(path), "machine", "--backbone", "tiny-llama")
    assert "book.txt" in proc.stdout or "note.pdf" in proc.stdout


@pytest.mark.parametrize("name,data", [("empty.txt", b""), ("bin.txt", b"\x00\x01\x02"), ("x.docx", b"PK"),
                                       ("bad.pdf", b"%PDF-1.4 nope")])
def test_bad_input_gives_one_error_line(tmp_path, name, data):
    f = tmp_path / name
    f.write_bytes(data)
    proc = run("memorize", str(f), "--bank", str(tmp_path / "b"), "--backbone", "tiny-llama", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr and not (tmp_path / "b").exists()


def test_missing_bank_and_file(tmp_path):
    proc = run("retrieve", "q", "--bank", str(tmp_path / "none"), "--backbone", "tiny-llama", check=False)
    assert proc.returncode != 0 and "no memory bank" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("memorize", str(tmp_path / "nope.txt"), "--bank", str(tmp_path / "b"), "--backbone", "tiny-llama",
               check=False)
    assert proc.returncode != 0 and "no such file" in proc.stderr


def test_bank_of_another_backbone_is_refused(bank):
    path, _, _ = bank
    proc = run("retrieve", "q", "--bank", str(path), "--backbone", "tiny-gpt2", check=False)
    assert proc.returncode != 0 and "another backbone" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_checkpoint(bank):
    path, _, _ = bank
    proc = run("retrieve", "q", "--bank", str(path), "--checkpoint", "/nope.safetensors", check=False)
    assert proc.returncode != 0 and "not found" in proc.stderr


def test_eval_commands_json(tmp_path, book_text):
    rows = [{"text": f"it was {w}", "label": lab} for w, lab in
            [("great", "positive"), ("awful", "negative"), ("fine", "positive"), ("bad", "negative")] * 3]
    for name in ("train", "test"):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = json.loads(run("eval-icl", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"),
                         "--task", "sst2", "--k", "2", "--memory-size", "8", "--seeds", "1,2", "--limit", "3",
                         "--backbone", "tiny-llama", "--json").stdout)
    assert set(out) >= {"acc_memory", "acc_incontext", "seeds"} and set(out["seeds"]) == {"1", "2"}
    assert out["n_test"] == 3
    from longmem_core.classify import icl_modes
    assert out["modes"] == list(icl_modes.MODES)  # every mode by default
    assert out["default_mode"] == icl_modes.DEFAULT_MODE
    for mode in icl_modes.MODES:
        a = out["accuracy"][mode]
        assert a["seeds"] == [out["seeds"][s]["accuracy"][mode] for s in ("1", "2")]
        assert a["mean"] == pytest.approx(sum(a["seeds"]) / 2) and a["std"] >= 0
    assert out["acc_memory"] == out["accuracy"]["memory"]["mean"]
    for seed in ("1", "2"):  # auto's choice, each candidate's held-out accuracy, and the time it added
        chosen = out["seeds"][seed]["selection"]
        assert chosen["chosen"] == out["auto"]["chosen"][seed] and set(chosen["accuracy"]) >= {"knn", "context"}
        assert out["seeds"][seed]["added_time"] > 0 and set(out["seeds"][seed]["macro_f1"]) == set(icl_modes.MODES)
    out = json.loads(run("eval-icl", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"),
                         "--task", "sst2", "--k", "2", "--memory-size", "8", "--seeds", "1", "--limit", "3",
                         "--modes", "knn,context", "--backbone", "tiny-llama", "--json").stdout)
    assert out["modes"] == ["knn", "context"] and set(out["accuracy"]) == {"knn", "context"}
    assert "acc_memory" not in out  # the paper's pair was not run
    proc = run("eval-icl", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"),
               "--modes", "knn,psychic", "--backbone", "tiny-llama", check=False)
    assert proc.returncode == 2 and "unknown --modes" in proc.stderr and "Traceback" not in proc.stderr
    out = json.loads(run("eval-passkey", "--lengths", "1500", "--trials", "1", "--backbone", "tiny-llama",
                         "--json").stdout)
    assert set(out["lengths"]["1500"]) >= {"acc_longmem", "acc_local"} and out["mode"] != "paper"
    proc = run("eval-passkey", "--lengths", "1500", "--mode", "telepathy", "--backbone", "tiny-llama", check=False)
    assert proc.returncode == 2 and "unknown --mode" in proc.stderr
    proc = run("eval-icl", "--train", str(tmp_path / "nope.jsonl"), "--test", str(tmp_path / "test.jsonl"),
               "--backbone", "tiny-llama", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_training_options_come_from_their_configs():
    """Every flag the training commands had still parses, and each default is the config dataclass's."""
    import dataclasses

    from longmem_core.cli import build_parser
    from longmem_core.config import RecallTrainConfig, RetrievalTrainConfig, TrainConfig
    parser = build_parser()
    for command, cls in (("train", TrainConfig), ("train-retrieval", RetrievalTrainConfig),
                         ("train-recall", RecallTrainConfig)):
        args = parser.parse_args([command, "book.txt"])
        defaults = cls(data=["book.txt"])
        for f in dataclasses.fields(cls):
            assert getattr(args, f.name) == getattr(defaults, f.name), (command, f.name)
    args = parser.parse_args(["train", "a.txt", "b", "--val", "v.txt", "--out", "o", "--steps", "3", "--grad-accum", "2",
                              "--lr", "0.1", "--warmup", "1", "--excerpt-segments", "4", "--checkpoint-every", "5",
                              "--val-segments", "6", "--trainable", "all", "--segment-length", "32", "--seed", "7",
                              "--backbone", "tiny-llama", "--checkpoint", "c", "--device", "cpu", "--json"])
    assert (args.data, args.val, args.steps, args.lr, args.trainable, args.segment_length) == (
        ["a.txt", "b"], ["v.txt"], 3, 0.1, "all", 32)
    assert args.memory_branch is None  # the checkpoint's, or closed for a fresh SideNet
    assert parser.parse_args(["train", "a.txt", "--memory-branch", "open"]).memory_branch == "open"
    args = parser.parse_args(["train-retrieval", "a.txt", "--eval", "e.txt", "--out", "o", "--backbone", "tiny-llama",
                              "--preset", "tiny", "--segment-length", "48", "--rank", "8", "--steps", "2", "--batch", "2",
                              "--max-queries", "4", "--excerpt-segments", "3", "--facts-per-book", "2",
                              "--eval-excerpt-segments", "3", "--eval-facts-per-book", "2", "--distractor-books", "0",
                              "--seed", "1", "--lr", "0.01", "--weight-decay", "0.1", "--fact-weight", "2",
                              "--threads", "1"])
    assert (args.rank, args.max_queries, args.fact_weight, args.preset, args.eval) == (8, 4, 2.0, "tiny", ["e.txt"])
    args = parser.parse_args(["train-recall", "a.txt", "--eval", "e.txt", "--checkpoint", "c", "--out", "o", "--steps", "3",
                              "--batch", "2", "--excerpt-segments", "2", "--local-tokens", "24", "--fact-window", "99",
                              "--eval-examples", "3", "--eval-every", "3", "--seed", "1", "--lr", "0.01",
                              "--gate-lr-scale", "5", "--weight-decay", "0.1", "--lm-weight", "0.5", "--chat-share", "0",
                              "--trainable", "all", "--shift-values", "--threads", "1"])
    assert (args.checkpoint, args.eval_every, args.shift_values, args.lm_weight) == ("c", 3, True, 0.5)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "a.txt", "--trainable", "search"])  # not a language-modelling choice


# -- issue 27: every error is one `error:` line and exit status 2 --

def _main(capsys, *args) -> tuple[int, str]:
    from longmem_core.cli import main
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


def test_memorize_into_an_existing_file_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    """Case 6: ``memorize FILE --bank <a file>`` read the whole document, then ended in a traceback (exit 1)."""
    from longmem_core.documents import data

    def never(*args, **kwargs):
        raise AssertionError("the document was read")
    monkeypatch.setattr(data, "read_document", never)
    doc, taken = tmp_path / "doc.txt", tmp_path / "notes.txt"
    doc.write_text("some text")
    taken.write_text("mine")
    code, err = _main(capsys, "memorize", str(doc), "--bank", str(taken), "--backbone", "tiny-llama")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --bank") and "a file is there" in err
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("mine")  # saving would have replaced this folder whole
    code, err = _main(capsys, "memorize", str(doc), "--bank", str(tmp_path / "folder"), "--backbone", "tiny-llama")
    assert code == 2 and "a folder of other files" in err and (tmp_path / "folder" / "keep.txt").read_text() == "mine"
    assert taken.read_text() == "mine"


def test_ask_with_a_huge_max_new_tokens_is_one_error_line(bank):
    """Case 6: ``ask --max-new-tokens 1000000000`` cut the prompt to nothing and crashed."""
    path, _, _ = bank
    proc = run("ask", "Who?", "--bank", str(path), "--max-new-tokens", "1000000000", "--backbone", "tiny-llama",
               check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: argument --max-new-tokens: must be a whole number from 1 to 8,191, not 1000000000")


@pytest.mark.parametrize("args,message", [
    (["ask", "q", "--bank", "b", "--temperature", "nan"], "argument --temperature: must be a number from 0 to 100, not nan"),
    (["ask", "q", "--bank", "b", "--temperature", "-1"], "argument --temperature: must be a number from 0 to 100, not -1"),
    (["ask", "q", "--bank", "b", "--search-top", "0"], "argument --search-top: must be a whole number from 1 to 100, not 0"),
    (["retrieve", "q", "--bank", "b", "--top", "abc"], "argument --search-top/--top: must be a whole number from 1 to 100, not 'abc'"),
    (["memorize", "f.txt", "--bank", "b", "--capacity", "-5"], "argument --capacity: must be a whole number"),
    (["eval-icl", "--train", "a", "--test", "b", "--k", "2.5"], "argument --k: must be a whole number"),
    (["eval-passkey", "--trials", "inf"], "argument --trials: must be a whole number"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number, not nan"),
    (["ask", "q"], "the following arguments are required: --bank"),
    (["no-such-command"], "invalid choice"),
])
def test_numbers_out_of_range_and_usage_errors_are_one_error_line(capsys, args, message):
    code, err = _main(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_a_question_over_its_limit_is_the_apps_message(bank, capsys):
    path, _, _ = bank
    code, err = _main(capsys, "retrieve", "q" * 2001, "--bank", str(path), "--backbone", "tiny-llama")
    assert code == 2 and err == "error: The question is 2,001 characters long; the limit is 2,000. Put long text " \
                                "in a document and read it into memory instead.\n"


def test_eval_icl_refuses_a_demonstration_file_over_the_file_limit(tmp_path, capsys, monkeypatch):
    from longmem_core import limits
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr("longmem_core.cli.eval_commands.MAX_FILE_BYTES", 100)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": "ab"[i % 2]}) + "\n" for i in range(20)))
    code, err = _main(capsys, "eval-icl", "--train", str(train), "--test", str(train), "--backbone", "tiny-llama")
    assert code == 2 and err.count("\n") == 1 and "train.jsonl" in err and "over the limit of 0.0 MB" in err
