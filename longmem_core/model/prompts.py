"""Token ids as the model reads them: the segment-start (sink) token, chat prompts and the tokens that end an answer."""
from __future__ import annotations

SINK_CANDIDATES = ("<|endoftext|>",)  # tried before the tokenizer's bos and eos tokens
STOP_CANDIDATES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>")  # end an answer, besides the tokenizer's eos token


def token_id(tokenizer, token: str | None) -> int | None:
    """The id of a token that really is in the vocabulary (not mapped to the unknown token), else None."""
    if not token:
        return None
    tid = tokenizer.convert_tokens_to_ids(token)
    return tid if isinstance(tid, int) and tokenizer.convert_ids_to_tokens(tid) == token else None


def sink_token_id(tokenizer) -> int | None:
    """The document-start token that opens every segment: <|endoftext|>, else bos, else eos; None if none exists."""
    for token in (*SINK_CANDIDATES, tokenizer.bos_token, tokenizer.eos_token):
        tid = token_id(tokenizer, token)
        if tid is not None:
            return tid
    return None


def stop_token_ids(tokenizer) -> set[int]:
    """Token ids that end a generated answer."""
    ids = (token_id(tokenizer, t) for t in (tokenizer.eos_token, *STOP_CANDIDATES))
    return {tid for tid in ids if tid is not None}


def chat_prompt(tokenizer, question: str, history: list[dict] | None = None, system: str | None = None) -> str:
    """A chat turn through the tokenizer's chat template, ending where the assistant's answer starts."""
    messages = ([{"role": "system", "content": system}] if system else []) + list(history or [])
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
