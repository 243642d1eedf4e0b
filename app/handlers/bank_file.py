"""Saving the session's bank as a .zip file, and loading one back.

A loaded bank is checked completely before anything is allocated for it or adopted: the zip's entries,
``meta.json`` against the model and the app's limits, the tensors' shapes (read from the safetensors header,
not the data), then, once loaded, the chunks against the sources and the keys for finite values. The library's
``MemoryBank.load`` checks a bank too; any ValueError it raises becomes a message here. Nothing in the session
changes until ``adopt_bank``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

from longmem_core import BankMismatchError, LongMemModel, MemoryBank

from ..session import Session
from .common import AppError, busy, check_file_size

BANK_FILES = ("meta.json", "tensors.safetensors")  # always in a saved bank, with one index_<head>.faiss per kv head
INDEX_FILE = re.compile(r"index_(\d+)\.faiss")
MIN_SLOTS = 256  # chunk slots the library allocates at least for a bank
NOT_A_BANK = "not a memory bank saved by LongMem Studio"


# -- saving --

def save_bank(session: Session, directory: str | os.PathLike) -> Path:
    """The session's bank as a .zip file in a new folder under ``directory`` (to download and load again
    later). The session keeps only its latest saved file: the previous one is deleted."""
    if session.bank is None or len(session.bank) == 0:
        raise AppError("Memory is empty: read a document first, then save.")
    Path(directory).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bank-", dir=directory))
    try:
        with busy(session), tempfile.TemporaryDirectory(dir=folder) as tmp:
            saved = session.bank.save(Path(tmp) / "bank")
            # a random tag keeps two sessions' files apart even when their banks are identical
            target = folder / f"longmem-bank-{len(session.bank)}-tokens-{secrets.token_hex(3)}.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
                for file in sorted(saved.iterdir()):
                    zf.write(file, file.name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    session.drop_saved()
    session.saved = [folder]
    return target


# -- loading --

def _field(meta: dict, name: str, low: int, high: int, where: str) -> int:
    value = meta.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AppError(f"{where}: meta.json field {name!r} must be a whole number, got {value!r:.40}")
    if not low <= value <= high:
        raise AppError(f"{where}: meta.json field {name!r} is {value:,}, outside {low:,}..{high:,}")
    return value


def _check_entries(zf: zipfile.ZipFile, where: str, max_unpacked: int | None) -> None:
    names = zf.namelist()
    hidden = [n for n in names if os.path.basename(n.rstrip("/")).startswith(".")]
    if hidden:
        raise AppError(f"{where}: contains a hidden file ({hidden[0]!r}); a saved bank holds only "
                       f"{', '.join(BANK_FILES)} and index_<n>.faiss")
    nested = [n for n in names if "/" in n or "\\" in n or n in ("..", ".")]
    if nested:
        raise AppError(f"{where}: contains a folder or path ({nested[0]!r}); a saved bank holds its files at the top level")
    missing = [f for f in BANK_FILES if f not in names]
    if missing:
        raise AppError(f"{where}: {NOT_A_BANK} (no {' / '.join(missing)} inside)")
    unknown = [n for n in names if n not in BANK_FILES and not INDEX_FILE.fullmatch(n)]
    if unknown:
        raise AppError(f"{where}: contains a file a saved bank does not have ({unknown[0]!r})")
    unpacked = sum(i.file_size for i in zf.infolist())
    if max_unpacked is not None and unpacked > max_unpacked:
        raise AppError(f"{where}: unpacks to {unpacked / 1e6:.0f} MB, over the limit of {max_unpacked / 1e6:.0f} MB")


def _check_meta(model: LongMemModel, folder: Path, where: str, max_capacity: int) -> dict:
    """meta.json and the tensor shapes checked against the model and the limits, before anything is allocated."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AppError(f"{where}: meta.json is not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(meta, dict):
        raise AppError(f"{where}: meta.json must hold an object, not a {type(meta).__name__}")
    chunk_size = _field(meta, "chunk_size", 1, 1024, where)
    capacity = _field(meta, "capacity", chunk_size, max_capacity, where)
    first_id = _field(meta, "first_id", 0, 2 ** 53, where)
    heads, head_dim = _field(meta, "n_kv_heads", 1, 4096, where), _field(meta, "head_dim", 1, 4096, where)
    sources = meta.get("sources")
    if not isinstance(sources, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("text"), str) for s in sources):
        raise AppError(f"{where}: meta.json 'sources' must be a list of {{\"name\": text, \"text\": text}} records")
    try:  # the model's own check, on an empty bank of the same kind: nothing allocated yet
        probe = MemoryBank(n_kv_heads=heads, head_dim=head_dim, chunk_size=chunk_size, capacity=chunk_size,
                           backbone=str(meta.get("backbone", "")), memory_layer=meta.get("memory_layer", -1))
        model.check_bank(probe)
        own = model.new_bank(capacity=chunk_size, chunk_size=chunk_size)
    except (BankMismatchError, ValueError, TypeError) as exc:
        raise AppError(f"{where}: {exc}") from exc
    if (heads, head_dim) != (own.n_kv_heads, own.head_dim):
        raise AppError(f"{where}: keys of {heads} heads x {head_dim} do not fit this model "
                       f"({own.n_kv_heads} x {own.head_dim})")
    shapes = _tensor_shapes(folder / "tensors.safetensors", where)
    n = shapes.get("token_mask", (None,))[0]
    expected = {"keys": (heads, n, chunk_size, head_dim), "values": (heads, n, chunk_size, head_dim),
                "token_mask": (n, chunk_size), "chunk_source": (n,), "chunk_tokens": (n, 2), "chunk_chars": (n, 2)}
    wrong = [name for name, shape in expected.items() if shapes.get(name) != shape]
    if n is None or wrong:
        raise AppError(f"{where}: the stored tensors do not match meta.json ({(wrong or ['token_mask'])[0]})")
    max_chunks = capacity // chunk_size
    if n * chunk_size > capacity:
        raise AppError(f"{where}: holds {n * chunk_size:,} tokens, more than its capacity of {capacity:,}")
    slots = max_chunks if first_id + n > max_chunks else first_id + n  # what the library will allocate
    if slots > max(2 * n, MIN_SLOTS):
        raise AppError(f"{where}: its chunk ids (first_id {first_id:,}) do not fit its {n:,} chunks and capacity "
                       f"of {capacity:,} tokens; {NOT_A_BANK}")
    return meta


def _tensor_shapes(path: Path, where: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes from a safetensors header (the data is not read)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise AppError(f"{where}: tensors.safetensors is not readable ({type(exc).__name__})") from exc


def _check_loaded(bank: MemoryBank, where: str) -> None:
    """What the shapes cannot tell: chunks point at real sources and places in them; keys and values are finite."""
    sources, n_sources = bank.sources, len(bank.sources)
    src = bank.chunk_source
    if len(src) and (src.min() < -1 or src.max() >= n_sources):
        raise AppError(f"{where}: a chunk names source {int(src.max() if src.max() >= n_sources else src.min())}, "
                       f"but the bank has {n_sources} source{'s' if n_sources != 1 else ''}")
    chars = bank.chunk_chars
    for s, (a, b) in zip(src.tolist(), chars.tolist()):
        if s >= 0 and a >= 0 and not a <= b <= len(sources[s]["text"]):
            raise AppError(f"{where}: a chunk's characters {a}..{b} lie outside its source {sources[s]['name']!r}")
    if not (torch.isfinite(bank.keys).all() and torch.isfinite(bank.values).all()):
        raise AppError(f"{where}: the stored keys or values are not finite numbers (NaN or infinity)")


def _without_paths(message: str, folder: Path, where: str) -> str:
    """An error message with the server's temporary folder replaced by the uploaded file's name."""
    message = message.splitlines()[0] if message else ""
    return re.sub(r"(/[\w.\-]+)+/?", lambda m: where if m.group(0).startswith(str(folder)) else
                  os.path.basename(m.group(0).rstrip("/")), message.replace(str(folder), where))


def read_bank(model: LongMemModel, path: str | os.PathLike, *, name: str | None = None, max_bytes: int | None = None,
              max_capacity: int = 1 << 20) -> MemoryBank:
    """A bank from a .zip written by ``save_bank``, checked completely; the session is not touched. ``name``
    is how messages call the file (its uploaded name; never a server path). AppError on anything wrong."""
    path = Path(path)
    where = name or path.name
    if not path.is_file():
        raise AppError(f"{where}: no such file")
    check_file_size(path, max_bytes)
    with tempfile.TemporaryDirectory(prefix="longmem-bank-") as tmp:
        folder = Path(tmp)
        try:
            with zipfile.ZipFile(path) as zf:
                _check_entries(zf, where, None if max_bytes is None else 2 * max_bytes)
                zf.extractall(folder)
            _check_meta(model, folder, where, max_capacity)
            bank = MemoryBank.load(folder)
            model.check_bank(bank)
        except AppError:
            raise
        except zipfile.BadZipFile as exc:
            raise AppError(f"{where}: not a .zip file saved by LongMem Studio") from exc
        except BankMismatchError as exc:
            raise AppError(f"{where}: {_without_paths(str(exc), folder, where)}") from exc
        except Exception as exc:  # safetensors, faiss, json and the library's checks raise their own types
            raise AppError(f"{where}: {NOT_A_BANK} ({_without_paths(str(exc), folder, where)})") from exc
    _check_loaded(bank, where)
    return bank


def adopt_bank(session: Session, bank: MemoryBank) -> None:
    """Make a checked bank the session's memory (documents, conversation and retrieval heat start over)."""
    with busy(session):
        session.forget_documents()
        session.bank = bank


def load_bank(model: LongMemModel, session: Session, path: str | os.PathLike, max_bytes: int | None = None,
              max_capacity: int = 1 << 20, name: str | None = None) -> dict:
    """``read_bank``, then describe it, then ``adopt_bank``: the session changes only if all three succeed."""
    from .memory import describe_bank
    bank = read_bank(model, path, name=name, max_bytes=max_bytes, max_capacity=max_capacity)
    stats = describe_bank(bank)
    adopt_bank(session, bank)
    return stats
