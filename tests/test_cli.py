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
    out = json.loads(run("eval-passkey", "--lengths", "1500", "--trials", "1", "--backbone", "tiny-llama",
                         "--json").stdout)
    assert set(out["lengths"]["1500"]) >= {"acc_longmem", "acc_local"}
    proc = run("eval-icl", "--train", str(tmp_path / "nope.jsonl"), "--test", str(tmp_path / "test.jsonl"),
               "--backbone", "tiny-llama", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
