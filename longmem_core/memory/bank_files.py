"""A memory bank on disk: saving that survives a crash, and loading that trusts nothing in the files.

A bank is a folder with two files:
- ``meta.json``: format, layout (kv heads, head dim, chunk size, capacity), index kind, who wrote it, the id of
  the oldest chunk, and the sources ``[{"name", "text"[, "pages"]}]``;
- ``tensors.safetensors``: keys/values [G, n, c, D] float16, token_mask [n, c] bool, chunk_source [n],
  chunk_tokens [n, 2], chunk_chars [n, 2] int64, and for an IVF index its centroids ivf_centroids [G, L, D]
  float32 and the inverted list of every chunk ivf_lists [G, n] int64.
The search structure is rebuilt from the keys when loading (for IVF around the saved centroids and lists, so
searches give what they gave before saving, and no distance is computed). Format 1 banks also held one faiss file per kv head; they load, but their faiss
files are never read: faiss's reader believes the sizes written in a file, so a few hundred bytes could make it
allocate gigabytes.

``load`` checks the whole bank before it allocates anything for it: every size it allocates comes from the
checked tensor headers (never from ``capacity`` or ``first_id``), so a bank file costs at most about its own
size in memory (plus its search structure). Anything wrong raises ``BankFileError`` (a ValueError) with a
one-line message naming the bank folder (never a full path) and the problem.
"""
from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ..config import check_capacity, check_index_kind
from .index import IVFIndex
from ..limits import MAX_LABEL_CHARS

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
META_FILE, TENSORS_FILE = "meta.json", "tensors.safetensors"
MAX_META_BYTES = 1 << 29  # 512 MiB of JSON (the sources' full text lives there)
MAX_HEADER_BYTES = 1 << 20  # a safetensors header of a handful of tensors is a few hundred bytes
MAX_KV_HEADS, MAX_HEAD_DIM, MAX_IVF_LISTS = 1024, 4096, 65_536
SPAN_OVERLAP = 8  # characters two neighbouring chunks may share (tokens that split one character)
MAX_ID = 1 << 62  # chunk ids and token positions stay far from int64 overflow
SAVE_STEPS = ("tensors", "meta", "synced", "switched", "cleaned")  # what ``save`` has done when _after_step runs
_after_step: Callable[[str], None] | None = None  # test hook: called after each step of ``save``

# safetensors dtype name -> (torch dtype, bytes per element), for the dtypes a bank holds
_DTYPES = {"F16": (torch.float16, 2), "F32": (torch.float32, 4), "BOOL": (torch.bool, 1), "I64": (torch.int64, 8)}
_META_TYPES = {"format": int, "n_kv_heads": int, "head_dim": int, "chunk_size": int, "capacity": int, "index": str,
               "nprobe": (int, type(None)), "backbone": str, "memory_layer": int, "first_id": int, "sources": list}
_SOURCE_KEYS = {"name", "text", "pages", "page_labels"}


class BankFileError(ValueError):
    """A folder is not a memory bank this version can read, or its files are damaged or inconsistent."""


class BankNotFoundError(BankFileError, FileNotFoundError):
    """There is no memory bank at a path (no folder or no meta.json)."""


class StoredBank(Protocol):
    """What a bank file holds of a bank (``MemoryBank`` has it all): its layout, its arrays of n stored chunks,
    oldest first, and its sources."""
    keys: torch.Tensor  # [G, n, c, D] float16
    values: torch.Tensor  # [G, n, c, D] float16
    token_mask: torch.Tensor  # [n, c] bool
    chunk_source: np.ndarray  # [n] int64
    chunk_tokens: np.ndarray  # [n, 2] int64
    chunk_chars: np.ndarray  # [n, 2] int64
    index: Any  # its search structure (index.py): an IVF index's centroids and lists are saved
    first_id: int
    n_chunks: int
    n_kv_heads: int
    head_dim: int
    chunk_size: int
    capacity: int
    index_kind: str
    nprobe: int | None
    backbone: str
    memory_layer: int
    sources: list[dict]


# -- saving --

def save(bank: StoredBank, directory: str | os.PathLike) -> Path:
    """Write ``bank`` to ``directory`` so that a crash at any instant leaves either the complete old bank or the
    complete new one there.

    The new bank is written into a sibling temporary folder, each file and then the folder are fsync'ed, and the
    folder is switched in with one rename. Linux cannot rename a folder over a non-empty one, so when a bank is
    already there the switch is ``renameat2(RENAME_EXCHANGE)``, which swaps the two names in one atomic step
    (ext4, xfs, btrfs, tmpfs and overlayfs support it); the old bank, now under the temporary name, is deleted
    afterwards. With no bank there, a plain ``rename`` is atomic. The parent folder is fsync'ed after the switch
    so it survives a power cut too. On a filesystem without RENAME_EXCHANGE (it answers EINVAL) the old bank is
    renamed aside first: a crash between the two renames would leave no bank at ``directory``.
    One writer per path at a time: leftovers of an earlier crashed save of the same path are deleted.
    """
    from safetensors.torch import save_file
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for leftover in directory.parent.glob(f".{directory.name}.new-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
    try:
        tensors = {"keys": bank.keys.cpu().contiguous(), "values": bank.values.cpu().contiguous(),
                   "token_mask": bank.token_mask.cpu().contiguous(),
                   "chunk_source": torch.from_numpy(np.ascontiguousarray(bank.chunk_source)),
                   "chunk_tokens": torch.from_numpy(np.ascontiguousarray(bank.chunk_tokens)),
                   "chunk_chars": torch.from_numpy(np.ascontiguousarray(bank.chunk_chars))}
        if isinstance(bank.index, IVFIndex):
            tensors["ivf_centroids"] = bank.index.centroids().contiguous()
            tensors["ivf_lists"] = bank.index.assignments(bank.first_id, bank.n_chunks)
        save_file(tensors, tmp / TENSORS_FILE)
        _fsync_file(tmp / TENSORS_FILE)
        _step("tensors")
        meta = {"format": FORMAT_VERSION, "n_kv_heads": bank.n_kv_heads, "head_dim": bank.head_dim,
                "chunk_size": bank.chunk_size, "capacity": bank.capacity, "index": bank.index_kind,
                "nprobe": bank.nprobe, "backbone": bank.backbone, "memory_layer": bank.memory_layer,
                "first_id": bank.first_id, "sources": bank.sources}
        (tmp / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        _fsync_file(tmp / META_FILE)
        _step("meta")
        _fsync_file(tmp)
        _step("synced")
        if directory.is_dir() and not directory.is_symlink():
            if not _exchange(tmp, directory):  # no RENAME_EXCHANGE here: two renames (not crash-atomic)
                aside = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
                directory.rename(aside / "old")
                try:
                    tmp.rename(directory)
                except BaseException:
                    (aside / "old").rename(directory)
                    raise
                tmp = aside
        else:
            tmp.rename(directory)  # replaces a symlink or file atomically; nothing there: appears atomically
        _fsync_file(directory.parent)
        _step("switched")
        shutil.rmtree(tmp, ignore_errors=True)  # the old bank after an exchange
        _step("cleaned")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _step(name: str) -> None:
    if _after_step is not None:
        _after_step(name)


def _fsync_file(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b.name)


# -- loading --

def read(directory: str | os.PathLike, *, documents: bool = True) -> dict[str, Any]:
    """The bank in ``directory``, every file checked before anything is allocated for it (see the module
    docstring), as the keyword arguments of ``MemoryBank.adopt`` (``MemoryBank.load`` builds the bank from them);
    BankFileError names the first problem. ``documents``: every chunk must name one of the bank's sources (a
    document bank, the default: the answer modes read every chunk's text); False also accepts chunks of no source
    (-1: a bank of bare keys, as training and benchmarks write)."""
    directory = Path(directory)
    name = shown_name(directory)
    if not (directory / META_FILE).is_file():
        raise BankNotFoundError(f"{name} is not a memory bank (no {META_FILE})")
    try:
        meta = _read_meta(directory / META_FILE, name)
        specs, data_start = _read_tensor_specs(directory / TENSORS_FILE, meta, name)
        tensors = _read_tensors(directory / TENSORS_FILE, specs, data_start, name)
    except OSError as exc:
        raise BankFileError(f"{name}: cannot read the bank ({exc.strerror or type(exc).__name__})") from exc
    _check_contents(tensors, meta, name, documents)
    return dict(keys=tensors["keys"], values=tensors["values"], token_mask=tensors["token_mask"],
                chunk_source=tensors["chunk_source"].numpy(), chunk_tokens=tensors["chunk_tokens"].numpy(),
                chunk_chars=tensors["chunk_chars"].numpy(), first_id=meta["first_id"], sources=meta["sources"],
                capacity=meta["capacity"], index=meta["index"], nprobe=meta["nprobe"], backbone=meta["backbone"],
                memory_layer=meta["memory_layer"], centroids=tensors.get("ivf_centroids"),
                lists=tensors.get("ivf_lists"))


def shown_name(directory: str | os.PathLike) -> str:
    """How a message names a bank folder: its own name, never the full path."""
    directory = Path(directory)
    return directory.name or str(directory)


def _read_meta(path: Path, name: str) -> dict:
    size = path.stat().st_size
    if size > MAX_META_BYTES:
        raise BankFileError(f"{name}: {META_FILE} is {size / 1e6:.0f} MB, over the limit of {MAX_META_BYTES / 1e6:.0f} MB")
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise BankFileError(f"{name}: {META_FILE} is not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(meta, dict):
        raise BankFileError(f"{name}: {META_FILE} must hold a JSON object, not a {type(meta).__name__}")
    meta.setdefault("nprobe", None)
    missing = [k for k in _META_TYPES if k not in meta]
    if missing:
        raise BankFileError(f"{name}: {META_FILE} lacks {', '.join(missing)}")
    if meta["format"] not in READABLE_FORMATS:
        raise BankFileError(f"{name}: unsupported memory bank format {str(meta['format'])[:40]}")
    for key, kind in _META_TYPES.items():
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BankFileError(f"{name}: {META_FILE} field {key!r} has the wrong type ({type(value).__name__})")
    _check_range(name, "n_kv_heads", meta["n_kv_heads"], 1, MAX_KV_HEADS)
    _check_range(name, "head_dim", meta["head_dim"], 1, MAX_HEAD_DIM)
    _check_range(name, "first_id", meta["first_id"], 0, MAX_ID)
    if meta["nprobe"] is not None:
        _check_range(name, "nprobe", meta["nprobe"], 1, MAX_IVF_LISTS)
    try:
        check_index_kind(meta["index"][:40])
        check_capacity(meta["capacity"], meta["chunk_size"])
    except ValueError as exc:
        raise BankFileError(f"{name}: {exc}") from exc
    for i, source in enumerate(meta["sources"]):
        _check_source(name, i, source)
    return meta


def _check_range(name: str, key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise BankFileError(f"{name}: {key} = {str(value)[:24]} is outside {low}..{high}")


def _check_source(name: str, i: int, source: object) -> None:
    """A source record: {"name": str, "text": str[, "pages": increasing character offsets from 0, "page_labels": one
    short string per page]}."""
    where = f"{name}: source {i}"
    if not isinstance(source, dict):
        raise BankFileError(f"{where} is a {type(source).__name__}, not a record with a name and a text")
    if not {"name", "text"} <= source.keys() or not source.keys() <= _SOURCE_KEYS:
        raise BankFileError(f"{where} must have the keys name, text and optionally pages, not {str(sorted(source))[:80]}")
    if not isinstance(source["name"], str) or not isinstance(source["text"], str):
        raise BankFileError(f"{where}: name and text must be strings")
    pages = source.get("pages")
    if pages is None:
        if "page_labels" in source:
            raise BankFileError(f"{where}: page_labels without pages")
        return
    if (not isinstance(pages, list) or not pages or not all(type(p) is int for p in pages) or pages[0] != 0
            or any(b < a for a, b in zip(pages, pages[1:])) or pages[-1] > len(source["text"])):
        raise BankFileError(f"{where}: pages must be increasing character offsets from 0 within its text")
    labels = source.get("page_labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(pages)
                               or not all(isinstance(x, str) and len(x) <= MAX_LABEL_CHARS for x in labels)):
        raise BankFileError(f"{where}: page_labels must be one short string per page")


def _read_tensor_specs(path: Path, meta: dict, name: str) -> tuple[dict, int]:
    """The safetensors header, checked against ``meta`` and the file's size: {tensor: (dtype, shape, begin, end)}
    with begin/end byte offsets into the data, and where the data starts. Nothing is allocated but the header."""
    if not path.is_file():
        raise BankFileError(f"{name}: no {TENSORS_FILE}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n_header = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n_header <= min(MAX_HEADER_BYTES, size - 8):
            raise BankFileError(f"{name}: {TENSORS_FILE} is truncated or not a safetensors file")
        raw = f.read(n_header)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BankFileError(f"{name}: {TENSORS_FILE} has an unreadable header") from exc
    if not isinstance(header, dict):
        raise BankFileError(f"{name}: {TENSORS_FILE} has an unreadable header")
    header.pop("__metadata__", None)
    G, D, c = meta["n_kv_heads"], meta["head_dim"], meta["chunk_size"]
    mask_shape = header.get("token_mask", {}).get("shape") if isinstance(header.get("token_mask"), dict) else None
    if not (isinstance(mask_shape, list) and len(mask_shape) == 2 and type(mask_shape[0]) is int):
        raise BankFileError(f"{name}: {TENSORS_FILE} has no token_mask [chunks, {c}]")
    n = mask_shape[0]
    if not 0 <= n <= meta["capacity"] // c:
        raise BankFileError(f"{name}: {n} chunks do not fit the capacity of {meta['capacity']} tokens")
    expected = {"keys": ("F16", [G, n, c, D]), "values": ("F16", [G, n, c, D]), "token_mask": ("BOOL", [n, c]),
                "chunk_source": ("I64", [n]), "chunk_tokens": ("I64", [n, 2]), "chunk_chars": ("I64", [n, 2])}
    if "ivf_centroids" in header or "ivf_lists" in header:
        info = header.get("ivf_centroids")
        shape = info.get("shape") if isinstance(info, dict) else None
        nlist = shape[1] if isinstance(shape, list) and len(shape) == 3 and type(shape[1]) is int else 0
        if not 1 <= nlist <= MAX_IVF_LISTS:
            raise BankFileError(f"{name}: ivf_centroids must be [{G}, lists, {D}] with 1..{MAX_IVF_LISTS} lists")
        expected["ivf_centroids"], expected["ivf_lists"] = ("F32", [G, nlist, D]), ("I64", [G, n])
    if set(header) != set(expected):
        extra, missing = sorted(set(header) - set(expected)), sorted(set(expected) - set(header))
        raise BankFileError(f"{name}: {TENSORS_FILE} " + (f"lacks {', '.join(missing)}" if missing
                                                            else f"holds unexpected tensors {', '.join(extra)[:80]}"))
    data_len, specs = size - 8 - n_header, {}
    for key, (dtype, shape) in expected.items():
        info = header[key]
        if not isinstance(info, dict) or info.get("dtype") != dtype or info.get("shape") != shape:
            got = (info.get("dtype"), info.get("shape")) if isinstance(info, dict) else info
            raise BankFileError(f"{name}: tensor {key} should be {dtype} {shape} for this bank's meta.json, "
                                f"is {str(got)[:60]}")
        offsets = info.get("data_offsets")
        nbytes = math.prod(shape) * _DTYPES[dtype][1]
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len or offsets[1] - offsets[0] != nbytes):
            raise BankFileError(f"{name}: {TENSORS_FILE} is truncated or its tensor {key} is out of bounds")
        specs[key] = (dtype, shape, offsets[0], offsets[1])
    spans = sorted((b, e) for _, _, b, e in specs.values())
    if any(b < e0 for (_, e0), (b, _) in zip(spans, spans[1:])):
        raise BankFileError(f"{name}: {TENSORS_FILE} has overlapping tensors")
    return specs, 8 + n_header


def _read_tensors(path: Path, specs: dict, data_start: int, name: str) -> dict[str, torch.Tensor]:
    """Each tensor read straight into a buffer of its checked size (no mapping of the file, no second copy)."""
    out = {}
    with open(path, "rb") as f:
        for key, (dtype, shape, begin, end) in specs.items():
            tensor = torch.empty(shape, dtype=_DTYPES[dtype][0])
            buffer = tensor.view(torch.uint8).numpy().reshape(-1) if tensor.numel() else np.empty(0, np.uint8)
            f.seek(data_start + begin)
            if f.readinto(buffer) != end - begin:
                raise BankFileError(f"{name}: {TENSORS_FILE} is truncated")
            out[key] = tensor
    return out


def _check_contents(t: dict[str, torch.Tensor], meta: dict, name: str, documents: bool = True) -> None:
    """The values agree with each other and with the sources: real tokens first in every chunk, token spans as
    long as their chunks, sources (every chunk one of them for ``documents``) and character spans in range,
    finite keys and values (and centroids)."""
    mask = t["token_mask"]  # [n, c]
    n, c = mask.shape
    counts = mask.sum(1)  # [n] real tokens per chunk
    if n and (counts.min() < 1 or not torch.equal(mask, torch.arange(c)[None, :] < counts[:, None])):
        raise BankFileError(f"{name}: token_mask must mark 1..{c} real tokens at the start of every chunk")
    sources, first_id = meta["sources"], meta["first_id"]
    if first_id + n > MAX_ID:
        raise BankFileError(f"{name}: first_id = {first_id} leaves no room for {n} chunks")
    src = t["chunk_source"].numpy()
    if n and (src.min() < (0 if documents else -1) or src.max() >= len(sources)):
        raise BankFileError(f"{name}: chunk_source points outside the {len(sources)} sources"
                            + (" (every chunk must name one of them)" if documents and src.min() == -1 else ""))
    tok = t["chunk_tokens"].numpy()
    if n and (tok[:, 0].min() < 0 or tok[:, 1].max() > MAX_ID or not np.array_equal(tok[:, 1] - tok[:, 0], counts.numpy())):
        raise BankFileError(f"{name}: chunk_tokens must be token spans as long as their chunks")
    chars = t["chunk_chars"].numpy()
    lengths = np.array([len(s["text"]) for s in sources] + [MAX_ID], dtype=np.int64)[src]  # source -1: no bound
    unknown = (chars[:, 0] == -1) & (chars[:, 1] == -1)
    spans_ok = (chars[:, 0] >= 0) & (chars[:, 0] <= chars[:, 1]) & (chars[:, 1] <= lengths)
    if not (unknown | spans_ok).all():
        raise BankFileError(f"{name}: chunk_chars must be character spans within their source text (or -1, -1)")
    known = ~unknown & (src >= 0)
    spanned = np.bincount(src[known], weights=(chars[known, 1] - chars[known, 0]).astype(np.float64),
                          minlength=len(sources))  # [sources] characters their chunks span, summed
    counts_per_source = np.bincount(src[known], minlength=len(sources))
    room = np.array([len(s["text"]) for s in sources], dtype=np.float64) + SPAN_OVERLAP * counts_per_source
    if len(sources) and (spanned > room).any():
        i = int(np.argmax(spanned - room))
        raise BankFileError(f"{name}: the chunks of source {i} span {int(spanned[i]):,} characters in all, more than "
                            f"its text of {len(sources[i]['text']):,}: each chunk spans its own tokens' text")
    for key in ("keys", "values", "ivf_centroids"):
        if key in t and not _all_finite(t[key]):
            raise BankFileError(f"{name}: {key} hold NaN or infinite numbers")
    if "ivf_lists" in t and n and (t["ivf_lists"].min() < 0 or t["ivf_lists"].max() >= t["ivf_centroids"].shape[1]):
        raise BankFileError(f"{name}: ivf_lists must name lists 0..{t['ivf_centroids'].shape[1] - 1}")


def _all_finite(x: torch.Tensor, block: int = 1 << 16) -> bool:
    """torch.isfinite(x).all() in blocks of elements (the mask of a whole bank would cost half its size)."""
    flat = x.reshape(-1)
    return all(bool(torch.isfinite(flat[b:b + block]).all()) for b in range(0, flat.numel(), block))

