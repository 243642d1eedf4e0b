"""Saving the session's bank as a .zip file, and loading one back.

A loaded bank is checked completely before it is adopted: here, the zip's entries (names, sizes) and this
app's capacity limit; everything inside the bank (meta.json, tensor shapes and dtypes, sources, spans, finite
keys) by the library's ``MemoryBank.load``, the same check the CLI gets, which allocates only what the file
stores. Its errors become one-line messages naming the uploaded file. Nothing in the session changes until
``adopt_bank``.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path


from longmem_core import BankMismatchError, LongMemModel, MemoryBank
from longmem_core.memory.bank_files import BankFileError

from ..session import Session
from .common import AppError, busy, check_file_size

BANK_FILES = ("meta.json", "tensors.safetensors")  # always in a saved bank, with one index_<head>.faiss per kv head
INDEX_FILE = re.compile(r"index_(\d+)\.faiss")
NOT_A_BANK = "not a memory bank saved by LongMem Studio"
MAX_COMPRESSION_RATIO = 10  # unpacked bytes per byte of a .zip over RATIO_FLOOR (the default model's banks: 1.3)
RATIO_FLOOR = 16_000_000  # what a smaller archive unpacks to is small whatever its ratio (tiny models' banks: 13)


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

def _check_entries(zf: zipfile.ZipFile, where: str, max_unpacked: int | None, archive_bytes: int,
                   max_meta: int | None) -> None:
    """The zip's entries are a saved bank's, and what they unpack to is bounded, all read from its directory before
    anything is unpacked: at most ``max_unpacked`` bytes in all, ``max_meta`` for meta.json (the sources' text;
    the library allows far more), and MAX_COMPRESSION_RATIO times the archive's ``archive_bytes`` (over
    RATIO_FLOOR). The sizes a zip claims bound what extracting it writes (zipfile stops at the claimed size and
    checks the CRC)."""
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
    meta = zf.getinfo("meta.json").file_size
    if max_meta is not None and meta > max_meta:
        raise AppError(f"{where}: its meta.json unpacks to {meta / 1e6:.1f} MB, over the limit of "
                       f"{max_meta / 1e6:.1f} MB")
    if unpacked > max(MAX_COMPRESSION_RATIO * archive_bytes, RATIO_FLOOR):
        raise AppError(f"{where}: unpacks to {unpacked / max(archive_bytes, 1):,.0f} times its size "
                       f"({unpacked / 1e6:.1f} MB from {archive_bytes / 1e6:.2f} MB); a saved bank unpacks to at "
                       f"most {MAX_COMPRESSION_RATIO} times")


def _without_paths(message: str, folder: Path, where: str) -> str:
    """An error message with the server's temporary folder replaced by the uploaded file's name."""
    message = message.splitlines()[0] if message else ""
    message = message.replace(folder.name, where)  # the library names a bank by its folder's name
    return re.sub(r"(/[\w.\-]+)+/?", lambda m: where if m.group(0).startswith(str(folder)) else
                  os.path.basename(m.group(0).rstrip("/")), message.replace(str(folder), where))


def check_uploaded(path: str | os.PathLike, saved_dir: str | os.PathLike | None) -> None:
    """AppError when ``path`` lies in ``saved_dir``, where the server keeps saved banks: a bank is loaded only from
    an upload, never from a path another session's saved bank has (that file is left as it is)."""
    if saved_dir is not None and Path(path).resolve().is_relative_to(Path(saved_dir).resolve()):
        raise AppError("Upload a saved bank (.zip) from your computer: download it with its link first.")


def read_bank(model: LongMemModel, path: str | os.PathLike, *, name: str | None = None, max_bytes: int | None = None,
              max_capacity: int = 1 << 20, saved_dir: str | os.PathLike | None = None) -> MemoryBank:
    """A bank from a .zip written by ``save_bank``, checked completely; the session is not touched. ``name``
    is how messages call the file (its uploaded name; never a server path). ``saved_dir``: where the server
    keeps saved banks; a path there is refused (only an uploaded file is loaded, never another session's saved
    one). AppError on anything wrong."""
    path = Path(path)
    where = name or path.name
    check_uploaded(path, saved_dir)
    if not path.is_file():
        raise AppError(f"{where}: no such file")
    check_file_size(path, max_bytes)
    with tempfile.TemporaryDirectory(prefix="longmem-bank-") as tmp:
        folder = Path(tmp)
        try:
            with zipfile.ZipFile(path) as zf:
                _check_entries(zf, where, None if max_bytes is None else 2 * max_bytes, path.stat().st_size,
                               max_meta=max_bytes)
                zf.extractall(folder)
            bank = MemoryBank.load(folder)  # the library's one complete check (the CLI uses the same)
            model.check_bank(bank)
            if bank.capacity > max_capacity:
                raise AppError(f"{where}: a capacity of {bank.capacity:,} tokens is over this app's limit of "
                               f"{max_capacity:,}")
        except AppError:
            raise
        except zipfile.BadZipFile as exc:
            raise AppError(f"{where}: not a .zip file saved by LongMem Studio") from exc
        except BankFileError as exc:  # already one clear line that starts with the bank's name
            raise AppError(_without_paths(str(exc), folder, where)) from exc
        except BankMismatchError as exc:
            raise AppError(f"{where}: {_without_paths(str(exc), folder, where)}") from exc
        except Exception as exc:  # safetensors, faiss, json and the library's checks raise their own types
            raise AppError(f"{where}: {NOT_A_BANK} ({_without_paths(str(exc), folder, where)})") from exc
    return bank


def adopt_bank(session: Session, bank: MemoryBank) -> None:
    """Make a checked bank the session's memory (documents, conversation and retrieval heat start over)."""
    with busy(session):
        session.forget_documents()
        session.bank = bank


def load_bank(model: LongMemModel, session: Session, path: str | os.PathLike, max_bytes: int | None = None,
              max_capacity: int = 1 << 20, name: str | None = None, saved_dir: str | os.PathLike | None = None) -> dict:
    """``read_bank``, then describe it, then ``adopt_bank``: the session changes only if all three succeed."""
    from .memory import describe_bank
    bank = read_bank(model, path, name=name, max_bytes=max_bytes, max_capacity=max_capacity, saved_dir=saved_dir)
    stats = describe_bank(bank)
    adopt_bank(session, bank)
    return stats
