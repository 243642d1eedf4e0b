import pytest
import torch

from longmem_core.model.backbone import FrozenBackbone, _tiny_model
from longmem_core.model.kv_cache import KVCache


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_neutral_forward_matches_transformers(name):
    hf, tok = _tiny_model(name, seed=3)
    ids = torch.randint(0, len(tok), (2, 11))
    with torch.no_grad():
        ref = hf(ids, output_hidden_states=True)
    bb = FrozenBackbone(hf, tok, name)
    out = bb(ids)
    assert len(out.hidden_states) == bb.n_layers + 1
    assert torch.allclose(bb.logits(out.hidden_states[-1]), ref.logits, atol=1e-5)
    for ours, theirs in zip(out.hidden_states[:-1], ref.hidden_states[:-1]):  # HF's last one is after the final norm
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_memory_keys_are_taken_before_rotary_embedding(tiny_backbones):
    bb = tiny_backbones["tiny-llama"]
    ids = torch.randint(0, 200, (1, 9))
    out = bb(ids, memory_layer=2)
    block = bb.blocks[2]
    h = block.norm_attn(out.hidden_states[2])
    expected = block.k_proj(h).view(1, 9, bb.n_kv_heads, bb.head_dim)  # [B, T, G, D], no rotation
    assert torch.allclose(out.memory_keys, expected, atol=1e-6)
    assert out.memory_keys.shape == (1, 9, 2, 8)
    # stopping at the memory layer gives the same keys
    early = bb(ids, memory_layer=2, stop_after=2)
    assert len(early.hidden_states) == 4 and torch.equal(early.memory_keys, out.memory_keys)
    kv_only = bb(ids, memory_layer=2, stop_after=2, last_kv_only=True)  # what memorizing runs
    assert len(kv_only.hidden_states) == 3
    assert torch.equal(kv_only.memory_keys, out.memory_keys) and torch.equal(kv_only.memory_values, out.memory_values)


def test_backbone_is_frozen(tiny_backbones):
    for bb in tiny_backbones.values():
        assert not any(p.requires_grad for p in bb.parameters())
        assert not bb.training


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_kv_cached_forward_matches_full_forward(tiny_backbones, name):
    bb = tiny_backbones[name]
    ids = torch.randint(0, 200, (1, 12))
    full = bb(ids).hidden_states[-1]
    caches = [KVCache() for _ in range(bb.n_layers)]
    parts = [bb(ids[:, :7], caches=caches).hidden_states[-1]]
    for t in range(7, 12):
        parts.append(bb(ids[:, t:t + 1], caches=caches).hidden_states[-1])
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_fingerprint_tells_backbones_apart(tiny_backbones):
    assert tiny_backbones["tiny-llama"].fingerprint() != tiny_backbones["tiny-gpt2"].fingerprint()
    assert tiny_backbones["tiny-llama"].fingerprint() == tiny_backbones["tiny-llama"].fingerprint()


def test_unknown_backbone_gives_a_clear_error():
    from longmem_core import BackboneError, load_backbone
    with pytest.raises(BackboneError, match="cannot load backbone"):
        load_backbone("/nonexistent/model/dir")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_loads_a_saved_model_directory_like_a_hub_id(tmp_path, name):
    from longmem_core import load_backbone
    hf, tok = _tiny_model(name, seed=5)
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    bb = load_backbone(str(tmp_path))
    ids = torch.randint(0, 200, (1, 6))
    with torch.no_grad():
        assert torch.allclose(bb.logits(bb(ids).hidden_states[-1]), hf(ids).logits, atol=1e-5)


def test_converted_cache_round_trip_and_a_broken_one_is_refused(tiny_backbones, tmp_path):
    from safetensors.torch import load_file, save_file

    from longmem_core.model.backbone import BackboneError, _load_converted, _save_converted
    bb = tiny_backbones["tiny-llama"]
    hf = bb.transformers_model()
    _save_converted(hf, bb.tokenizer, tmp_path / "conv")
    model, tokenizer = _load_converted(tmp_path / "conv")
    x = torch.tensor([[1, 2, 3, 40, 50]])
    with torch.no_grad():
        assert torch.equal(model(x).logits, hf(x).logits)
    assert tokenizer("abc")["input_ids"] == bb.tokenizer("abc")["input_ids"]
    weights = load_file(tmp_path / "conv" / "model.safetensors")
    weights.pop(next(k for k in weights if "layers.0.mlp" in k))
    save_file(weights, tmp_path / "conv" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackboneError, match="does not match"):
        _load_converted(tmp_path / "conv")
