"""A fast tokenizer built from a SentencePiece model file (``tokenizer.model``, as Llama-2 and Mistral ship it).

transformers converts such a file through protobuf; where protobuf is missing, ``load_backbone`` builds the
tokenizer here instead, from what the ``sentencepiece`` library reads plus the few training options it does not
expose (read straight from the file's protobuf wire format). Supported: BPE and Unigram models, byte fallback,
the dummy-prefix space, the identity and NFKC normalizers. The result gives character offsets, which memorizing
needs, and encodes as SentencePiece does (tested against ``SentencePieceProcessor.encode``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPACE = "\u2581"  # SentencePiece's visible space
UNIGRAM, BPE = 1, 2  # TrainerSpec.model_type


@dataclass
class SpmOptions:
    """The training options the tokenizer depends on, with SentencePiece's defaults."""

    model_type: int = UNIGRAM
    byte_fallback: bool = False
    normalizer: str = "nmt_nfkc"
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; value: int for varints, bytes otherwise."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 2:
            size = varint()
            yield number, wire, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, data[pos:pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def read_options(model_file: str | Path) -> SpmOptions:
    """ModelProto field 2 is the TrainerSpec (3 model_type, 35 byte_fallback), field 3 the NormalizerSpec
    (1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces)."""
    options = SpmOptions()
    for number, wire, value in _fields(Path(model_file).read_bytes()):
        if number == 2 and wire == 2:
            for n, w, v in _fields(value):
                if n == 3 and w == 0:
                    options.model_type = v
                elif n == 35 and w == 0:
                    options.byte_fallback = bool(v)
        elif number == 3 and wire == 2:
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    options.normalizer = v.decode("utf-8")
                elif n == 3 and w == 0:
                    options.add_dummy_prefix = bool(v)
                elif n == 4 and w == 0:
                    options.remove_extra_whitespaces = bool(v)
    return options


def _bpe_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Merges ranked as SentencePiece applies them: by the merged piece's id (its priority), each piece split
    into every pair of pieces that are in the vocabulary."""
    merges = []
    for piece, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        pairs = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        merges.extend(sorted(pairs, key=lambda pair: (vocab[pair[0]], vocab[pair[1]])))
    return merges


def sentencepiece_tokenizer(model_file: str | Path, config: dict | None = None):
    """A ``PreTrainedTokenizerFast`` for a SentencePiece model; ``config``: a tokenizer_config.json's fields
    (special tokens, chat template)."""
    import sentencepiece
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    options = read_options(model_file)
    n = sp.get_piece_size()
    unk_id = next((i for i in range(n) if sp.is_unknown(i)), 0)
    if options.model_type == BPE:
        vocab = {sp.id_to_piece(i): i for i in range(n)}
        model = models.BPE(vocab, _bpe_merges(vocab), unk_token=sp.id_to_piece(unk_id), fuse_unk=True,
                           byte_fallback=options.byte_fallback)
    elif options.model_type == UNIGRAM:
        model = models.Unigram([(sp.id_to_piece(i), sp.get_score(i)) for i in range(n)], unk_id,
                               byte_fallback=options.byte_fallback)
    else:
        raise ValueError(f"{model_file}: SentencePiece model type {options.model_type} is not supported (BPE, Unigram)")
    tok = Tokenizer(model)
    steps = [normalizers.NFKC()] if "nfkc" in options.normalizer.lower() else []
    if options.remove_extra_whitespaces:
        steps += [normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(" {2,}"), " ")]
    if options.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))
    steps.append(normalizers.Replace(" ", SPACE))
    tok.normalizer = normalizers.Sequence(steps)
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
                                    + ([decoders.Strip(" ", 1, 0)] if options.add_dummy_prefix else []))
    special = [sp.id_to_piece(i) for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]
    tok.add_special_tokens([AddedToken(piece, special=True, normalized=False) for piece in special])

    config = dict(config or {})
    names = {}
    for role in ("bos", "eos", "unk", "pad"):
        value = config.get(f"{role}_token")
        value = value.get("content") if isinstance(value, dict) else value
        tid = {"bos": sp.bos_id(), "eos": sp.eos_id(), "unk": unk_id, "pad": sp.pad_id()}[role]
        names[f"{role}_token"] = value or (sp.id_to_piece(tid) if 0 <= tid < n else None)
    bos = names["bos_token"]
    if bos and config.get("add_bos_token", True):
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in names.items() if v})
    if config.get("chat_template"):
        fast.chat_template = config["chat_template"]
    return fast


def tokenizer_from_folder(folder: str | Path):
    """The tokenizer of a model folder that holds a SentencePiece ``tokenizer.model`` (and maybe a
    tokenizer_config.json), or None when it holds none."""
    folder = Path(folder)
    model_file = folder / "tokenizer.model"
    if not model_file.is_file():
        return None
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    return sentencepiece_tokenizer(model_file, config)
