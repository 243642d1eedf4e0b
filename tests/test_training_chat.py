"""Chat-format training examples (longmem_core.training.objectives.chat) on the tiny backbone."""
import json

import pytest
import torch

from longmem_core.cli import main as cli_main
from longmem_core.training.objectives.chat import ChatExample, chat_ids, read_chat_examples


def test_the_loss_covers_the_answer_and_its_end_of_turn_only(make_model):
    model = make_model("tiny")
    ex = ChatExample("What colour is the sky?", "Blue, mostly.")
    ids, first = chat_ids(model, ex)
    assert ids[:first] == model.chat_ids(ex.question)  # exactly the prompt the model answers at chat time
    answer = model.tokenizer.decode(ids[first:], skip_special_tokens=True)
    assert answer.strip() == "Blue, mostly."  # the answer as the template ends its turn (this one: a line break)
    assert model.tokenizer.eos_token_id not in ids[first:-1]


def test_bad_example_files_name_the_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"question": "q", "answer": "a"}\n{"question": "no answer"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="x.jsonl:2"):
        read_chat_examples([str(f)])


def test_train_chat_lowers_the_answer_loss(make_model, tmp_path, book_text, capsys):
    rows = [{"question": f"What is item {i}?", "answer": f"Item {i} is a lantern.",
             "context": book_text[i * 300:(i + 1) * 300] if i % 2 else ""} for i in range(6)]
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    start = make_model("tiny", segment_length=64).save_checkpoint(tmp_path / "start.safetensors")
    code = cli_main(["train-chat", str(data), "--val", str(data), "--checkpoint", str(start), "--out",
                     str(tmp_path / "run"), "--steps", "25", "--batch", "2", "--lr", "3e-3", "--warmup", "2",
                     "--checkpoint-every", "25", "--trainable", "all"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and (tmp_path / "run" / "sidenet.safetensors").exists()
    assert out["val_after"]["val_answer_loss"] < out["val_before"]["val_answer_loss"]
