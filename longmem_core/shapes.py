"""The shape alphabet: one letter per tensor axis, for the whole library.

Every shape comment (``# [B, H, T, D]``) and shape docstring in a module that follows this alphabet uses
these letters, each with one meaning only. Products and sums are written as such (``B*T``, ``R*c``); a count
with no letter of its own gets a lowercase name (``rows``, ``n``). ``hidden[l]`` names the backbone's hidden
state after block l (``hidden[0]``: the embeddings); it is not an axis.
"""
from __future__ import annotations

AXES: dict[str, str] = {
    "B": "batch rows",
    "T": "tokens read in this call (queries)",
    "S": "tokens an attention layer attends to: those cached before this call, then the T new ones",
    "N": "query vectors searched in memory at once (B*T rows flattened)",
    "M": "chunks stored in a memory bank",
    "A": "chunk slots allocated in a memory bank (M <= A)",
    "V": "vocabulary",
    "W": "model width (hidden size)",
    "L": "backbone blocks",
    "H": "query heads",
    "G": "key/value heads (H is a multiple of G)",
    "D": "head dim",
    "R": "chunks retrieved per query token and head",
    "K": "tokens retrieved per query token and head (K = R*c)",
    "c": "tokens per memory chunk (chunk size)",
}
