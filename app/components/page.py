"""The page's widgets by tab, typed: what one component's events read from or write to another's.

Each tab's component (chat.py, memory.py, ...) renders its widgets and returns them as its class here; ``Page``
collects them for the events. This module imports no component, so the components import it one way."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass(frozen=True)
class MemoryWidgets:
    files: gr.File
    example: gr.Dropdown
    read: gr.Button
    stop: gr.Button
    progress: gr.HTML  # the tab's status line: reading progress, results and errors
    summary: gr.HTML
    save: gr.Button
    load: gr.UploadButton
    clear: gr.Button
    download: gr.HTML  # the one-time link to the latest saved bank (app/downloads.py)
    stats: gr.JSON
    when_full: gr.Radio  # what reading does when the documents would not fit (config.WHEN_FULL)


@dataclass(frozen=True)
class ChatWidgets:
    chatbot: gr.Chatbot  # emptied by the Memory tab's Clear too
    question: gr.Textbox
    compare: gr.Checkbox
    mode: gr.Dropdown
    stop: gr.Button
    restart: gr.Button
    retrieved: gr.HTML  # emptied by the Memory tab's Clear too
    answer_json: gr.JSON


@dataclass(frozen=True)
class MapWidgets:
    view: gr.HTML  # redrawn by the Memory and Chat tabs' events too
    redraw: gr.Button


@dataclass(frozen=True)
class ClassifyWidgets:
    choice: gr.Dropdown
    upload: gr.File
    template: gr.Dropdown
    k: gr.Slider
    text: gr.Textbox
    test_file: gr.File
    bundled_test: gr.Checkbox
    run: gr.Button
    stop: gr.Button
    status: gr.HTML  # the tab's status line: progress, results and errors
    probabilities: gr.Label
    explanation: gr.HTML
    accuracy: gr.HTML
    table: gr.Dataframe
    result_json: gr.JSON


@dataclass(frozen=True)
class SettingsWidgets:
    top_k: gr.Dropdown
    search_top: gr.Slider
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    chunk_size: gr.Dropdown
    capacity: gr.Number


@dataclass(frozen=True)
class Page:
    session: gr.State  # this user's Session (memory, conversation, demonstrations)
    memory: MemoryWidgets
    chat: ChatWidgets
    memory_map: MapWidgets
    classify: ClassifyWidgets
    settings: SettingsWidgets
    chat_tab: gr.Tab  # selected: the Chat tab shows what memory holds now
