"""The page's widgets by tab, typed: what one component's events read from or write to another's."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .chat import ChatWidgets
from .classify import ClassifyWidgets
from .memory import MemoryWidgets
from .memory_map import MapWidgets
from .settings import SettingsWidgets


@dataclass(frozen=True)
class Page:
    session: gr.State  # this user's Session (memory, conversation, demonstrations)
    memory: MemoryWidgets
    chat: ChatWidgets
    memory_map: MapWidgets
    classify: ClassifyWidgets
    settings: SettingsWidgets
    chat_tab: gr.Tab  # selected: the Chat tab shows what memory holds now
