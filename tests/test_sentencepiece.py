"""Backbones whose tokenizer is a SentencePiece model (Llama-2, Mistral style) load and read into memory.

A tiny SentencePiece model is trained here at test time on a chapter shipped in assets/; no download."""
import io
import json

import pytest
import torch

from conftest import ASSETS

sentencepiece = pytest.importorskip("sentencepiece")

TEXTS = ["The Time Traveller (for so it will be convenient to speak of him) was expounding a recondite matter.",
         "  two  spaces, a tab\there, and a new\nline ",
         "naïve café, 東京 and ünïcödé: bytes it never saw",
         "4071 is the pass key."]
CHAT_TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}[assistant]{% endif %}")


def _train(model_type: str, vocab_size: int = 400) -> bytes:
    """A SentencePiece model trained as Llama-2's was: byte fallback, no normalization, spaces kept."""
    text = (ASSETS / "the_time_machine_ch1.txt").read_text(encoding="utf-8")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(line for line in text.splitlines() if line.strip()), model_writer=model,
        model_type=model_type, vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return model.getvalue()


@pytest.fixture(scope="module")
def spm_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    paths = {}
    for kind in ("bpe", "unigram"):
        paths[kind] = folder / f"{kind}.model"
        paths[kind].write_bytes(_train(kind))
    return paths


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_tokenizer_encodes_and_decodes_as_sentencepiece_does(spm_models, kind):
    from longmem_core.model.spm_tokenizer import BPE, UNIGRAM, read_options, sentencepiece_tokenizer
    path = spm_models[kind]
    options = read_options(path)
    assert options.model_type == {"bpe": BPE, "unigram": UNIGRAM}[kind] and options.byte_fallback
    assert options.normalizer == "identity" and options.add_dummy_prefix and not options.remove_extra_whitespaces
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    tok = sentencepiece_tokenizer(path)
    assert len(tok) == sp.get_piece_size()
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == sp.encode(text), text
        assert tok.decode(ids) == sp.decode(ids)
    assert tok("abc")["input_ids"][0] == sp.bos_id()  # special tokens added as Llama's tokenizer adds them


@pytest.fixture(scope="module")
def spm_backbone_dir(spm_models, tmp_path_factory):
    """A tiny Llama-architecture model folder whose only tokenizer is the SentencePiece BPE model."""
    from transformers import LlamaConfig, LlamaForCausalLM
    folder = tmp_path_factory.mktemp("spm-llama")
    (folder / "tokenizer.model").write_bytes(spm_models["bpe"].read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "chat_template": CHAT_TEMPLATE}))
    vocab = sentencepiece.SentencePieceProcessor(model_file=str(spm_models["bpe"])).get_piece_size()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def test_a_sentencepiece_backbone_loads_memorizes_and_generates(spm_backbone_dir):
    from longmem_core import LongMemModel, load_backbone, preset
    backbone = load_backbone(str(spm_backbone_dir))
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_backbone_dir / "tokenizer.model"))
    words = "a recondite matter"
    assert backbone.tokenizer(words, add_special_tokens=False)["input_ids"] == sp.encode(words)
    model = LongMemModel(preset("tiny", backbone=str(spm_backbone_dir)), backbone=backbone)
    assert model.sink_id == sp.bos_id()  # no <|endoftext|> here: the bos token opens every segment
    text = (ASSETS / "the_time_machine_ch1.txt").read_text(encoding="utf-8")[:1500] + " naïve café"
    bank = model.new_bank(capacity=4096)
    stats = model.memorize(text, bank, source="ch1.txt")
    assert stats.tokens == len(sp.encode(text)) == len(bank)
    for cid in range(bank.first_id, bank.first_id + bank.n_chunks):
        info = bank.chunk_info(cid)
        assert info.text == text[info.char_start:info.char_end] and info.text.strip() in text
    prompt = model.chat_ids("What was the Time Traveller expounding?")
    assert model.tokenizer.decode(prompt, skip_special_tokens=True).startswith("[user] What was")
    gen = model.generate(prompt, bank, max_new_tokens=6)
    assert "".join(gen) == gen.text and gen.token_ids and gen.chunk_mass
    ids = list(prompt)
    for _ in gen.token_ids:  # the same tokens without a KV cache
        ids.append(int(model(torch.tensor([ids]), bank).logits[0, -1].argmax()))
    assert ids[len(prompt):] == gen.token_ids
