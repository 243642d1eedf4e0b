"""A bank on disk: hostile or damaged files are refused with one clear BankFileError before anything is
allocated for them, and a save killed at any instant leaves the complete old bank or the complete new one."""
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from longmem_core import MemoryBank
from longmem_core.memory.bank_files import SAVE_STEPS, BankFileError
from longmem_core.config import MAX_CAPACITY

REPO = Path(__file__).resolve().parents[1]

TEXT = "Page one is here. " * 4 + "Page two follows now. " * 4


def _bank(capacity: int = 64, tokens: int = 40, seed: int = 0) -> MemoryBank:
    g = torch.Generator().manual_seed(seed)
    bank = MemoryBank(n_kv_heads=2, head_dim=8, chunk_size=4, capacity=capacity, backbone="tiny", memory_layer=1)
    src = bank.add_source("a.pdf", TEXT, pages=[0, 72])
    spans = np.stack([np.arange(tokens), np.arange(tokens) + 1], axis=1)
    bank.add(torch.randn(tokens, 2, 8, generator=g), torch.randn(tokens, 2, 8, generator=g), source=src,
             char_spans=spans)
    return bank


@pytest.fixture
def saved(tmp_path) -> Path:
    return _bank().save(tmp_path / "bank")


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _edit_tensors(path: Path, **changes) -> None:
    tensors = load_file(path / "tensors.safetensors")
    tensors.update(changes)
    save_file({k: v for k, v in tensors.items() if v is not None}, path / "tensors.safetensors")


def _with_row(mask: torch.Tensor, row: int, values: list[bool]) -> torch.Tensor:
    mask = mask.clone()
    mask[row] = torch.tensor(values)
    return mask


def _refused(path: Path, message: str) -> BankFileError:
    with pytest.raises(BankFileError, match=message) as info:
        MemoryBank.load(path)
    text = str(info.value)
    assert "\n" not in text and str(path.parent) not in text and text.startswith(path.name)
    return info.value


def test_a_saved_bank_loads(saved):
    loaded = MemoryBank.load(saved)
    assert loaded.n_chunks == 10 and loaded.sources[0]["pages"] == [0, 72]


def test_no_meta_json_is_not_a_bank(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        MemoryBank.load(tmp_path)
    with pytest.raises(BankFileError):
        MemoryBank.load(tmp_path / "missing")


@pytest.mark.parametrize("content,message", [
    ("[1, 2, 3]", "must hold a JSON object, not a list"),
    ("{not json", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # nesting deeper than Python's recursion limit
    (b"\xff\xfe{}", "not valid JSON"),
    (pickle.dumps({"format": 2}), "not valid JSON"),
])
def test_unreadable_meta_json(saved, content, message):
    (saved / "meta.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    _refused(saved, message)


@pytest.mark.parametrize("changes,message", [
    ({"first_id": 1_000_000, "capacity": 1_099_511_627_776}, "over the limit"),
    ({"capacity": MAX_CAPACITY + 1}, "over the limit"),
    ({"capacity": 8}, "do not fit the capacity"),
    ({"capacity": 2}, "at least one chunk"),
    ({"first_id": -1}, "first_id = -1 is outside"),
    ({"first_id": 1 << 63}, "first_id"),
    ({"first_id": 1.5}, "'first_id' has the wrong type"),
    ({"n_kv_heads": "2"}, "'n_kv_heads' has the wrong type"),
    ({"n_kv_heads": True}, "'n_kv_heads' has the wrong type"),
    ({"n_kv_heads": 3}, r"tensor keys should be F16 \[3, 10, 4, 8\]"),
    ({"head_dim": 0}, "head_dim = 0 is outside"),
    ({"chunk_size": 2}, "token_mask|tensor keys should be"),
    ({"index": "hnsw"}, "index must be one of"),
    ({"format": 99}, "unsupported memory bank format 99"),
    ({"nprobe": 0}, "nprobe = 0 is outside"),
    ({"sources": []}, "chunk_source points outside the 0 sources"),
    ({"sources": ["abc"]}, "source 0 is a str"),
    ({"sources": [5]}, "source 0 is a int"),
    ({"sources": {"name": "x"}}, "'sources' has the wrong type"),
    ({"sources": [{"name": "a.txt"}]}, "must have the keys name, text"),
    ({"sources": [{"name": 1, "text": TEXT}]}, "name and text must be strings"),
    ({"sources": [{"name": "a", "text": TEXT, "extra": 1}]}, "must have the keys"),
    ({"sources": [{"name": "a", "text": TEXT, "pages": [0, 500]}]}, "pages must be increasing"),
    ({"sources": [{"name": "a", "text": TEXT, "pages": [10, 5]}]}, "pages must be increasing"),
    ({"sources": [{"name": "a", "text": TEXT, "pages": "0"}]}, "pages must be increasing"),
    ({"sources": [{"name": "a", "text": "short"}]}, "chunk_chars must be character spans"),
])
def test_inconsistent_meta_json(saved, changes, message):
    _edit_meta(saved, **changes)
    _refused(saved, message)


def test_missing_meta_keys_are_named(saved):
    meta = json.loads((saved / "meta.json").read_text())
    del meta["first_id"], meta["sources"]
    (saved / "meta.json").write_text(json.dumps(meta))
    _refused(saved, "lacks first_id, sources")


@pytest.mark.parametrize("change,message", [
    (lambda t: {"keys": t["keys"].clone().index_fill_(1, torch.tensor([3]), float("nan"))}, "keys hold NaN"),
    (lambda t: {"values": t["values"].clone().index_fill_(1, torch.tensor([0]), float("inf"))}, "values hold NaN"),
    (lambda t: {"keys": t["keys"].float()}, "tensor keys should be F16"),
    (lambda t: {"keys": t["keys"][:, :5].contiguous()}, "tensor keys should be F16"),
    (lambda t: {"chunk_source": t["chunk_source"] + 1}, "chunk_source points outside"),
    (lambda t: {"chunk_source": t["chunk_source"] - 2}, "chunk_source points outside"),
    (lambda t: {"chunk_tokens": t["chunk_tokens"] * 2}, "chunk_tokens must be token spans"),
    (lambda t: {"chunk_tokens": t["chunk_tokens"] - 100}, "chunk_tokens must be token spans"),
    (lambda t: {"chunk_chars": t["chunk_chars"] + 1000}, "chunk_chars must be character spans"),
    (lambda t: {"chunk_chars": t["chunk_chars"].flip(1).contiguous()}, "chunk_chars must be character spans"),
    (lambda t: {"token_mask": torch.zeros_like(t["token_mask"])}, "token_mask must mark"),
    (lambda t: {"token_mask": _with_row(t["token_mask"], 0, [True, False, True, True])}, "token_mask must mark"),
    (lambda t: {"chunk_chars": None}, "lacks chunk_chars"),
    (lambda t: {"extra": torch.zeros(3)}, "unexpected tensors extra"),
    (lambda t: {"ivf_centroids": torch.zeros(2, 0, 8), "ivf_lists": torch.zeros(2, 10, dtype=torch.long)},
     "ivf_centroids must be"),
    (lambda t: {"ivf_lists": torch.zeros(2, 10, dtype=torch.long)}, "ivf_centroids must be"),
    (lambda t: {"ivf_centroids": torch.zeros(2, 4, 8)}, "lacks ivf_lists"),
    (lambda t: {"ivf_centroids": torch.zeros(2, 4, 8), "ivf_lists": torch.zeros(2, 9, dtype=torch.long)},
     r"tensor ivf_lists should be I64 \[2, 10\]"),
    (lambda t: {"ivf_centroids": torch.full((2, 4, 8), float("nan")), "ivf_lists": torch.zeros(2, 10, dtype=torch.long)},
     "ivf_centroids hold NaN"),
    (lambda t: {"ivf_centroids": torch.zeros(2, 4, 8), "ivf_lists": torch.full((2, 10), 4)}, "ivf_lists must name lists 0..3"),
])
def test_inconsistent_tensors(saved, change, message):
    _edit_tensors(saved, **change(load_file(saved / "tensors.safetensors")))
    _refused(saved, message)


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:5], "truncated or not a safetensors file"),
    (lambda b: b"", "truncated or not a safetensors file"),
    (lambda b: pickle.dumps({"keys": np.zeros(3)}), "truncated or not a safetensors file|unreadable header"),
    (lambda b: (1 << 60).to_bytes(8, "little") + b[8:], "truncated or not a safetensors file"),
    (lambda b: b[:8] + b"[" * (len(b) - 8), "unreadable header"),
])
def test_damaged_tensor_file(saved, damage, message):
    path = saved / "tensors.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    _refused(saved, message)


def test_no_tensor_file(saved):
    (saved / "tensors.safetensors").unlink()
    _refused(saved, "no tensors.safetensors")


def test_faiss_files_of_a_format_1_bank_are_never_read(saved):
    """Format 1 banks held one faiss file per kv head; garbage there cannot hurt: the index comes from the keys."""
    _edit_meta(saved, format=1)
    for g in range(2):
        (saved / f"index_{g}.faiss").write_bytes(b"IxFI" + b"\xff" * 64)
    loaded, original = MemoryBank.load(saved), MemoryBank.load(saved.parent / "bank")
    q = torch.randn(3, 4, 8)
    assert torch.equal(loaded.search(q, 2).chunk_ids, original.search(q, 2).chunk_ids)


def test_huge_first_id_and_capacity_allocate_only_what_is_stored(saved):
    _edit_meta(saved, first_id=10 ** 15, capacity=MAX_CAPACITY)
    bank = MemoryBank.load(saved)
    assert bank._k.shape[1] == bank.n_chunks == 10  # storage for the stored chunks, not for capacity or first_id
    assert list(bank.chunk_ids) == list(range(10 ** 15, 10 ** 15 + 10))
    assert bank.chunk_info(10 ** 15 + 2).text == TEXT[8:12]
    hits = bank.search(torch.randn(1, 2, 8), 16)  # more chunks asked than stored: the rest masked
    assert (hits.chunk_ids[0, :, 10:] == -1).all() and hits.mask[0, :, :40].all() and not hits.mask[0, :, 40:].any()
    bank.add(torch.randn(8, 2, 8), torch.randn(8, 2, 8))  # and it keeps working as a bank
    assert bank.n_chunks == 12 and bank.search(torch.randn(1, 2, 8), 12).chunk_ids.max() == 10 ** 15 + 11


def _python(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO, timeout=300)


def _bank_memory_script():
    spec = importlib.util.spec_from_file_location("bank_memory", REPO / "scripts" / "bank_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
@pytest.mark.parametrize("chunk_size, index, tokens", [(1, "flat", 32_768), (4, "flat", 32_768), (1, "ivf", 32_768)])
def test_loading_grows_resident_memory_by_less_than_twice_the_file(tmp_path, chunk_size, index, tokens):
    """A bank file whose meta.json claims the largest capacity and a huge first_id costs less than twice its size
    at the peak of loading, in a fresh process (1-token chunks were the worst: a float32 index vector per chunk
    cost as much as its keys and values; their index now keeps the float16 keys)."""
    script = _bank_memory_script()
    bank = script.write_bank(tmp_path / "big", chunk_size, index, tokens)
    warmup = script.write_bank(tmp_path / "small", 4, "flat", 64)
    result = script.measure_in_child(bank, warmup)
    assert result["chunks"] == tokens // chunk_size
    assert result["index"] == ("IVFIndex" if index == "ivf" else "FlatIndex")
    assert result["peak_growth"] < 2 * result["file_bytes"], result


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_a_loaded_bank_holds_less_than_twice_its_file(tmp_path, chunk_size, index):
    """What the bank itself holds (storage, metadata, search structure: ``nbytes``) stays under twice its files,
    and the float16 index of 1-token chunks searches exactly like a float32 one."""
    g = torch.Generator().manual_seed(chunk_size)
    bank = MemoryBank(n_kv_heads=2, head_dim=32, chunk_size=chunk_size, capacity=4096, index=index)
    bank.add(torch.randn(4096, 2, 32, generator=g), torch.randn(4096, 2, 32, generator=g))
    path = bank.save(tmp_path / "bank")
    loaded = MemoryBank.load(path, documents=False)
    size = sum(f.stat().st_size for f in path.iterdir())
    assert loaded.nbytes() < 2 * size, (loaded.nbytes(), size)
    q = torch.randn(3, 4, 32, generator=g)
    assert torch.equal(loaded.search(q, 8).chunk_ids, bank.search(q, 8).chunk_ids)
    if index == "flat":  # exact: the top chunk of each query is its best inner product over the float16 keys
        means = torch.from_numpy(loaded.chunk_keys())  # [G, Nc, D]
        best = torch.einsum("nhd,hcd->nhc", q, means.repeat_interleave(2, dim=0)).argmax(-1)
        assert torch.equal(loaded.search(q, 1).chunk_ids[..., 0], best + loaded.first_id)


# -- a save killed at any instant --

_KILLED_SAVE = """
    import os, sys, torch
    from longmem_core import MemoryBank
    from longmem_core.memory import bank_files
    bank_files._after_step = lambda done: os._exit(17) if done == sys.argv[2] else None
    bank = MemoryBank(n_kv_heads=2, head_dim=8, chunk_size=4, capacity=64, backbone="new")
    bank.add(torch.ones(24, 2, 8), torch.ones(24, 2, 8))
    bank.save(sys.argv[1])
"""


@pytest.mark.parametrize("existing,step", [(True, s) for s in SAVE_STEPS] + [(False, "synced"), (False, "switched")])
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_bank(tmp_path, existing, step):
    path = tmp_path / "bank"
    if existing:
        _bank().save(path)
    proc = _python(_KILLED_SAVE, str(path), step)  # the writer dies right after ``step``
    assert proc.returncode == 17, proc.stderr[-2000:]
    switched = SAVE_STEPS.index(step) >= SAVE_STEPS.index("switched")
    if not existing and not switched:
        assert not path.exists()
    else:
        bank = MemoryBank.load(path, documents=False)
        if switched:  # the complete new bank
            assert (bank.backbone, bank.n_chunks, len(bank)) == ("new", 6, 24)
        else:  # the complete old bank
            assert (bank.backbone, bank.n_chunks, len(bank)) == ("tiny", 10, 40) and bank.sources[0]["name"] == "a.pdf"
    _bank(seed=1).save(path)  # the next save cleans up what the killed one left
    assert [p.name for p in tmp_path.iterdir()] == ["bank"]
    assert MemoryBank.load(path).n_chunks == 10


def test_a_failed_save_keeps_the_old_bank(tmp_path, monkeypatch):
    from longmem_core.memory import bank_files
    path = _bank().save(tmp_path / "bank")

    def fail(step):
        if step == "meta":
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(bank_files, "_after_step", fail)
    with pytest.raises(OSError):
        _bank(seed=1, tokens=8).save(path)
    assert MemoryBank.load(path).n_chunks == 10 and [p.name for p in tmp_path.iterdir()] == ["bank"]


def test_the_cli_answers_a_damaged_bank_with_one_error_line_and_exit_2(saved):
    (saved / "tensors.safetensors").write_bytes((saved / "tensors.safetensors").read_bytes()[:300])
    proc = subprocess.run([sys.executable, "-m", "longmem_core", "retrieve", "question", "--bank", str(saved),
                           "--backbone", "tiny-llama", "--json"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines[-1].startswith("error: ") and "truncated" in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# -- property: damaged bytes anywhere give a bank or one BankFileError, nothing else --

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PRISTINE: dict[str, bytes] = {}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from(["meta.json", "tensors.safetensors"]),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=4)), min_size=1,
                      max_size=4),
       cut=st.none() | st.floats(0, 1))
def test_damaged_bytes_give_a_bank_or_a_bank_file_error(tmp_path_factory, file, edits, cut):
    if not _PRISTINE:
        path = _bank().save(tmp_path_factory.mktemp("pristine") / "bank")
        _PRISTINE.update({f.name: f.read_bytes() for f in path.iterdir()})
    folder = tmp_path_factory.mktemp("fuzz") / "bank"
    folder.mkdir()
    for name, data in _PRISTINE.items():
        (folder / name).write_bytes(data)
    data = bytearray(_PRISTINE[file])
    for where, patch in edits:
        at = int(where * len(data))
        data[at:at + len(patch)] = patch
    if cut is not None:
        data = data[:int(cut * len(data))]
    (folder / file).write_bytes(bytes(data))
    try:
        bank = MemoryBank.load(folder)
    except BankFileError as exc:
        assert "\n" not in str(exc) and str(folder.parent) not in str(exc)
    else:  # what loads is a working bank
        assert bank.n_chunks <= bank.max_chunks and bank.search(torch.randn(1, 2, 8), 2).keys.shape == (1, 2, 8, 8)


def test_the_switch_is_one_atomic_exchange_of_two_folders(tmp_path):
    from longmem_core.memory.bank_files import _exchange
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("old")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("new")
    if not _exchange(tmp_path / "b", tmp_path / "a"):
        pytest.skip("this filesystem has no renameat2(RENAME_EXCHANGE); save falls back to two renames")
    assert (tmp_path / "a" / "x").read_text() == "new" and (tmp_path / "b" / "x").read_text() == "old"


def test_without_an_atomic_exchange_save_still_replaces_the_bank(tmp_path, monkeypatch):
    from longmem_core.memory import bank_files
    path = _bank().save(tmp_path / "bank")
    monkeypatch.setattr(bank_files, "_exchange", lambda a, b: False)
    _bank(seed=1, tokens=8).save(path)
    assert MemoryBank.load(path).n_chunks == 2 and [p.name for p in tmp_path.iterdir()] == ["bank"]


def test_chunks_of_no_source_are_refused_in_a_document_bank(saved):
    """Issue 27, case 5: sources [] with every chunk_source -1 passed every check, then the default answer mode
    failed inside BM25. A document bank's every chunk names one of its sources; a bank of bare keys may say so."""
    _edit_meta(saved, sources=[])
    n = load_file(saved / "tensors.safetensors")["chunk_source"].shape[0]
    chars = torch.full((n, 2), -1, dtype=torch.int64)
    _edit_tensors(saved, chunk_source=torch.full((n,), -1, dtype=torch.int64), chunk_chars=chars)
    _refused(saved, r"chunk_source points outside the 0 sources \(every chunk must name one of them\)")
    assert MemoryBank.load(saved, documents=False).n_chunks == n


def test_chunks_spanning_far_more_text_than_their_source_holds_are_refused(saved):
    """Issue 27, case 2: every chunk spanning its source's whole text passed (each span lay inside the text); the
    map showed each whole span, and the word index of the search read each too (4 GB for a small bank)."""
    n = load_file(saved / "tensors.safetensors")["chunk_chars"].shape[0]
    wide = torch.tensor([[0, len(TEXT)]] * n, dtype=torch.int64)
    _edit_tensors(saved, chunk_chars=wide)
    _refused(saved, f"the chunks of source 0 span {n * len(TEXT):,} characters in all, more than its text of {len(TEXT)}")
