"""Plain functions behind the app, one module per tab (as ``app/components/``): each takes the model, a Session
and plain values, calls longmem_core's public API, and returns plain values. No Gradio here, so every one is
testable without a browser. Bad input raises ``AppError`` with a message for the user, before anything in the
session changes.

- ``common``: the error type, the model, bank settings, the session lock, size and length limits
- ``memory``: documents read into memory, the bank described, cleared
- ``bank_file``: the bank saved as a .zip, and loaded back only after it is checked completely
- ``chat``: answers with memory, and the chunks they retrieved
- ``classify``: few-shot classification from demonstrations in memory (the default mode, in context only, the paper's)

The names below are re-exported so callers can write ``handlers.memorize``.
"""
from longmem_core.classify import icl

from ..session import Session
from .bank_file import BANK_FILES, adopt_bank, check_uploaded, load_bank, read_bank, save_bank
from .chat import CONTEXT_CHARS, ChatResult, chat, context_of, new_conversation
from .classify import (DEMONSTRATION_SETS, TEMPLATES, UPLOADED_SET, DemonstrationSet, classify_rows, classify_text,
                       demonstration_set, load_demonstrations, read_test_file)
from .common import (ASSETS, BUSY, AppError, check_bank_settings, check_file_size, check_question, chunk_size_choices,
                     load_model, retrieval_width, top_k_choices, wait_idle)
from .memory import (BOOKS, MemorizeProgress, MemorizeReport, bank_stats, bundled_book, clear, describe_bank,
                     memorize, read_documents)

__all__ = [
    "ASSETS", "AppError", "BANK_FILES", "BOOKS", "BUSY", "CONTEXT_CHARS", "ChatResult", "DEMONSTRATION_SETS",
    "DemonstrationSet", "MemorizeProgress", "MemorizeReport", "Session", "TEMPLATES", "UPLOADED_SET", "adopt_bank",
    "bank_stats", "bundled_book", "chat", "check_bank_settings", "check_file_size", "check_question", "check_uploaded",
    "chunk_size_choices", "classify_rows", "classify_text", "clear", "context_of", "demonstration_set",
    "describe_bank", "icl", "load_bank", "load_demonstrations", "load_model", "memorize", "new_conversation",
    "read_bank", "read_documents", "read_test_file", "retrieval_width", "save_bank", "top_k_choices", "wait_idle",
]
