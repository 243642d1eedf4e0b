"""HTML for the app's panels, one module per tab (as ``app/components/``): pure functions of plain values;
every piece of user or document text is escaped. The names below are re-exported (``views.status``)."""
from .chat import memory_status, quote_markdown, retrieved, sentence_markdown
from .classify import accuracy, classification
from .common import SOURCE_COLORS, duration, flat, number, progress_bar, status
from .memory import bank_summary, download_link, memorize_done, memorize_progress
from .memory_map import memory_map, project_keys

__all__ = ["SOURCE_COLORS", "accuracy", "bank_summary", "classification", "download_link", "duration", "flat", "memorize_done",
           "memorize_progress", "memory_map", "memory_status", "number", "progress_bar", "project_keys", "quote_markdown", "retrieved", "sentence_markdown", "status"]
