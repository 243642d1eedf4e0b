"""The Chat tab: questions about what was read, streamed answers, and the chunks retrieved for each."""
from __future__ import annotations

import gradio as gr

from longmem_core.answer import answer as answer_modes

from .. import handlers, views
from .common import Ui, user_errors
from .memory_map import drawn
from .page import ChatWidgets, Page


PLACEHOLDER = ("**Ask about what you read into memory.** The answer streams here, with the sentence it rests on and "
               "its page; on the right you see the chunks the search found in memory, highlighted in their text.")
HINT = "Ask a question about what you read into memory"
OFFERED = [answer_modes.MODE_SPECS[name] for name in answer_modes.APP_MODES]  # the modes the app offers, in order
MODES_HELP = "  \n".join(f"**{m.label}**: {m.description}." for m in OFFERED)


def documents(session) -> list[str]:
    """The names of the documents in the session's memory (none when it is empty)."""
    bank = session.bank
    return [s["name"] for s in bank.sources] if bank is not None and len(bank) else []


def messages(turns: list[dict], current: handlers.ChatResult | None = None) -> list[dict]:
    """Chat turns as Chatbot messages; a compared turn shows both answers, each labelled."""
    out = []
    items = [(t["question"], t["answer"], t["backbone_answer"], t.get("quote"), t.get("short", True)) for t in turns]
    if current is not None:
        items.append((current.question, current.answer, current.backbone_answer, None, True))
    for n, (question, answer, alone, quote, short) in enumerate(items):
        if n < len(turns):  # a finished answer: say so if it is empty
            answer = answer.strip() or "*(the model produced no text)*"
            alone = None if alone is None else alone.strip() or "*(the model produced no text)*"
            if quote:  # a short answer with the sentence it was copied from, or the sentence itself and where it is
                answer = answer + views.quote_markdown(quote) if short else views.sentence_markdown(quote)
        out.append({"role": "user", "content": question})
        if alone is None:
            out.append({"role": "assistant", "content": answer or "…"})
        else:
            out.append({"role": "assistant", "content": f"**With memory:** {answer}"})
            out.append({"role": "assistant", "content": f"**Backbone alone, no memory:** {alone or '…'}"})
    return out


def render(ui: Ui) -> ChatWidgets:
    with gr.Row(equal_height=False):
        with gr.Column(scale=6):
            chatbot = gr.Chatbot(label="Conversation", height=460, placeholder=PLACEHOLDER, buttons=["copy"],
                                 feedback_options=None, group_consecutive_messages=False,  # a compared turn: two bubbles
                                 elem_id="lm-chatbot")
            question = gr.Textbox(label="Your question", placeholder=HINT,
                                  lines=1, max_lines=4, submit_btn="Ask", stop_btn=False, elem_id="lm-question")
            with gr.Row():
                stop = gr.Button("Stop", variant="stop", scale=1, size="md")
                restart = gr.Button("New conversation (forget earlier questions)", variant="secondary", scale=2,
                                    size="md", elem_id="lm-restart")
            with gr.Row():
                compare = gr.Checkbox(label="Also answer with the backbone alone (no memory), to compare", value=False,
                                      scale=3, elem_id="lm-compare")
                mode = gr.Dropdown([(m.label, m.name) for m in OFFERED],
                                   value=answer_modes.DEFAULT_MODE, label="Answer mode", scale=2, elem_id="lm-mode")
            gr.Markdown(MODES_HELP, elem_classes=["lm-modes-help"])
        with gr.Column(scale=5):
            gr.Markdown("#### Retrieved from memory for the latest answer")
            retrieved = gr.HTML(views.memory_status(0, []), elem_id="lm-retrieved")
            with gr.Accordion("Latest answer as JSON", open=False):
                answer_json = gr.JSON(show_label=False)
    return ChatWidgets(chatbot, question, compare, mode, stop, restart, retrieved, answer_json)


def listen(ui: Ui, page: Page) -> None:
    model, settings, w, options = ui.model, ui.settings, page.chat, page.settings
    untrained = ui.checkpoint is None

    def panel(session) -> str:
        """The right-hand panel: the latest answer's chunks, or, before one, what memory holds now."""
        names = documents(session)
        if session.last_answer and names:
            return views.retrieved(session.last_answer, untrained)
        return views.memory_status(len(session.bank) if names else 0, names)
    outputs = [w.chatbot, w.question, w.retrieved, w.answer_json, page.memory_map.view, page.session]

    @user_errors
    def chat(question, session, compare, search_top, max_new_tokens, temperature, top_k=None, mode=answer_modes.DEFAULT_MODE,
             request: gr.Request = None):
        """Answer a question with this session's memory; streams the answer, then lists the retrieved chunks."""
        session = ui.open(session, request)
        earlier = list(session.turns)
        before = (panel(session), session.last_answer, drawn(session))
        steps = handlers.chat(model, session, question, compare=bool(compare), search_top=int(search_top),
                              max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                              history_turns=settings.history_turns, top_k=int(top_k) if top_k else None,
                              max_chars=settings.max_question_chars, mode=mode or answer_modes.DEFAULT_MODE)
        for result in steps:
            if not result.done:
                yield messages(earlier, result), "", *before, session  # common.py: UNCHANGED OUTPUTS
        session.last_answer = result.to_dict()
        yield (messages(session.turns), "", views.retrieved(session.last_answer, untrained), session.last_answer,
               drawn(session), session)

    asking = w.question.submit(
        chat, [w.question, page.session, w.compare, options.search_top, options.max_new_tokens, options.temperature,
               options.top_k, w.mode], outputs,
        api_name="chat", show_progress="minimal", show_progress_on=w.chatbot, **ui.heavy())
    w.stop.click(None, cancels=[asking], api_visibility="private")

    def restart(session, request: gr.Request):
        session = ui.open(session, request)
        handlers.new_conversation(session)
        return [], session

    w.restart.click(restart, [page.session], [w.chatbot, page.session], api_name="new_conversation",
                    concurrency_limit=None)

    def opened(session, request: gr.Request):
        """On opening the tab: what memory holds now (and a question hint naming it), or the latest answer."""
        session = ui.open(session, request)
        names = documents(session)
        hint = f"Ask a question about {names[-1]}" if names else HINT
        return panel(session), gr.update(placeholder=hint), session

    page.chat_tab.select(opened, [page.session], [w.retrieved, w.question, page.session], api_visibility="private",
                         show_progress="hidden", concurrency_limit=None)
