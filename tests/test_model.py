import math

import pytest
import torch

from longmem_core import BankMismatchError, LongMemConfig, LongMemModel, preset
from longmem_core.model import generation
from longmem_core.model.checkpoint import CheckpointMismatchError

TEXT = ("It was a bright cold day in April, and the clocks were striking thirteen. "
        "The pass key is 4071. Winston Smith slipped quickly through the glass doors. ") * 3


def _ids(model, n=20):
    return torch.tensor([model.encode(TEXT)[:n]])


def _filled_bank(model, text=TEXT):
    bank = model.new_bank()
    model.memorize(text, bank, source="t.txt")
    return bank


def test_untrained_identity_sidenet_equals_backbone_without_memory(tiny_model):
    ids = _ids(tiny_model)
    bb = tiny_model.backbone
    ref = bb.logits(bb(ids).hidden_states[-1])
    assert torch.allclose(tiny_model(ids).logits, ref, atol=1e-5)
    assert torch.allclose(tiny_model(ids, tiny_model.new_bank()).logits, ref, atol=1e-5)  # empty bank


def test_paper_init_copies_blocks(make_model):
    model = make_model("tiny", side_init="paper", memory_layer=2)
    side, blocks = model.side, model.backbone.blocks
    assert len(side.layers) == len(blocks) // 2
    for i, layer in enumerate(side.layers):
        src = blocks[2 if i == side.memory_index else 2 * i + 1]
        for (n, a), (_, b) in zip(layer.named_parameters(), src.named_parameters()):
            assert torch.equal(a, b), n
    assert side.memory_index == 1
    assert torch.equal(side.gate, torch.zeros(model.backbone.n_heads))


def test_paper_init_empty_memory_equals_no_memory(make_model):
    model = make_model("tiny", side_init="paper")
    ids = _ids(model)
    assert torch.equal(model(ids).logits, model(ids, model.new_bank()).logits)


@pytest.mark.parametrize("side_init", ["paper", "identity"])
def test_closed_gate_makes_output_independent_of_memory(make_model, side_init):
    model = make_model("tiny", side_init=side_init)
    with torch.no_grad():
        model.side.gate.fill_(-math.inf)
    ids = _ids(model)
    a = model(ids, _filled_bank(model)).logits
    b = model(ids, _filled_bank(model, text="Completely different words fill this other memory bank. " * 4)).logits
    assert torch.equal(a, b)
    assert torch.allclose(a, model(ids).logits, atol=1e-6)


def test_open_gate_uses_memory(make_model):
    model = make_model("tiny", memory_branch="open")  # the paper's init (the default closes the branch)
    ids = _ids(model)
    out = model(ids, _filled_bank(model), trace=True)
    assert not torch.allclose(out.logits, model(ids).logits)
    tr = out.trace
    B, T, H, R = tr.chunk_ids.shape
    assert (B, T, H, R) == (1, 20, 4, model.cfg.chunks_per_query)
    assert torch.allclose(tr.memory_share, torch.full((1, 20, 4), 0.5))
    assert torch.allclose(tr.chunk_weights.sum(-1), torch.ones(1, 20, 4), atol=1e-5)
    assert math.isclose(sum(tr.chunk_totals().values()), 1.0, rel_tol=1e-5)


def test_backward_trains_only_the_sidenet(make_model):
    model = make_model("tiny", side_init="paper", memory_branch="open")
    before = {n: p.clone() for n, p in model.backbone.named_parameters()}
    bank = _filled_bank(model)
    opt = torch.optim.AdamW(model.trainable_parameters().values(), lr=1e-2)
    ids = _ids(model, 30)
    loss = torch.nn.functional.cross_entropy(model(ids, bank).logits[0, :-1], ids[0, 1:])
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.side.gate.grad is not None and model.side.gate.grad.abs().sum() > 0
    opt.step()
    for n, p in model.backbone.named_parameters():
        assert torch.equal(p, before[n]), n
    assert not torch.equal(model.side.gate, torch.zeros_like(model.side.gate))


def test_identity_init_has_gradients_for_scales_and_gates(make_model):
    model = make_model("tiny", memory_branch="open")
    bank = _filled_bank(model)
    ids = _ids(model, 30)
    torch.nn.functional.cross_entropy(model(ids, bank).logits[0, :-1], ids[0, 1:]).backward()
    assert model.side.scale.grad.abs().sum() > 0 and model.side.gate.grad.abs().sum() > 0


def test_checkpoint_round_trip(make_model, tmp_path, tiny_backbones):
    model = make_model("tiny", top_k=6)
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.01)
    path = model.save_checkpoint(tmp_path / "ckpt.safetensors")
    from safetensors.torch import load_file
    assert set(load_file(path)) == set(model.trainable_parameters())
    fresh = LongMemModel(preset("tiny", top_k=6), backbone=tiny_backbones["tiny-llama"])
    assert not torch.equal(model(_ids(model)).logits, fresh(_ids(model)).logits)  # the weights differ before loading
    fresh.load_checkpoint(path)
    for name, p in model.trainable_parameters().items():
        assert torch.equal(fresh.get_parameter(name), p), name
    ids = _ids(model)
    bank = _filled_bank(model)
    assert torch.equal(model(ids, bank).logits, fresh(ids, bank).logits)
    from longmem_core.model.model import read_checkpoint_meta
    assert read_checkpoint_meta(path)["config"]["top_k"] == 6


def test_bank_from_another_backbone_is_refused(tiny_backbones):
    llama = LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"])
    gpt2 = LongMemModel(preset("tiny-gpt2"), backbone=tiny_backbones["tiny-gpt2"])
    bank = gpt2.new_bank()
    with pytest.raises(BankMismatchError, match="another backbone"):
        llama.memorize("text", bank)
    with pytest.raises(BankMismatchError):
        llama(_ids(llama), bank)


def test_memorize_maps_every_chunk_to_its_exact_text(tiny_model, book_text):
    text = book_text[:3000]
    bank = tiny_model.new_bank(capacity=4096)
    calls = []
    stats = tiny_model.memorize(text, bank, source="tm.txt", progress=lambda d, t: calls.append((d, t)))
    assert stats.tokens == len(bank) and stats.chunks == bank.n_chunks
    assert calls[0][0] == 0 and calls[-1] == (stats.tokens, stats.tokens)
    pieces = [bank.chunk_info(bank.first_id + i) for i in range(bank.n_chunks)]
    # chunks tile the text in order; neighbours overlap only where a chunk border splits a multi-byte character
    rebuilt, end = [], 0
    for p in pieces:
        assert p.char_start >= end or (end - p.char_start == 1 and ord(text[p.char_start]) > 127)
        rebuilt.append(text[max(end, p.char_start):p.char_end])
        end = p.char_end
    assert "".join(rebuilt) == text
    for p in pieces:
        assert p.source == "tm.txt" and p.text == text[p.char_start:p.char_end]


def test_memorize_stores_no_sink_token(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    stats = tiny_model.memorize("abcdefghij" * 10, bank)
    assert stats.tokens == 100 == len(bank)


def test_memorize_in_parallel_threads_writes_the_same_bank(tiny_model, book_text):
    text = book_text[:4000]
    banks = {}
    for workers, batch in ((1, 1), (2, 1), (3, 2)):
        bank = tiny_model.new_bank(capacity=4096)
        calls = []
        stats = tiny_model.memorize(text, bank, source="tm.txt", workers=workers, batch_size=batch,
                                    progress=lambda d, t: calls.append(d))
        assert calls == sorted(calls) and calls[-1] == stats.tokens  # progress in reading order
        banks[workers] = bank
    ref = banks[1]
    for bank in (banks[2], banks[3]):
        assert len(bank) == len(ref) and bank.n_chunks == ref.n_chunks > 8
        for cid in (ref.first_id, ref.first_id + ref.n_chunks // 2, ref.first_id + ref.n_chunks - 1):
            assert bank.chunk_info(cid) == ref.chunk_info(cid)
        assert torch.equal(bank._k, ref._k) and torch.equal(bank._v, ref._v)


def test_score_labels_matches_manual_log_probs(tiny_model):
    bank = _filled_bank(tiny_model)
    scores, trace = tiny_model.score_labels("Review: fine. Sentiment:", [" good", " bad!"], bank, trace=True)
    assert scores.shape == (2,) and trace is not None
    ids = tiny_model.encode("Review: fine. Sentiment: bad!")
    logp = torch.log_softmax(tiny_model(torch.tensor([ids]), bank).logits[0], -1)
    n = len(tiny_model.encode("Review: fine. Sentiment:"))
    manual = sum(logp[t - 1, ids[t]] for t in range(n, len(ids)))
    assert torch.allclose(scores[1], manual, atol=1e-4)


def test_generation_streams_and_matches_uncached_greedy(tiny_model):
    bank = _filled_bank(tiny_model)
    prompt = tiny_model.chat_ids("What is the pass key?")
    gen = generation.generate(tiny_model, prompt, bank, max_new_tokens=6, guard_ngram=0)  # raw greedy: no guard
    pieces = list(gen)
    assert "".join(pieces) == gen.text and 0 < len(gen.token_ids) <= 6
    ids = list(prompt)
    for _ in gen.token_ids:  # the same tokens without a KV cache
        ids.append(int(tiny_model(torch.tensor([ids]), bank).logits[0, -1].argmax()))
    assert ids[len(prompt):] == gen.token_ids
    assert 0 < gen.memory_share <= 1 and gen.chunk_mass
    for r in tiny_model.retrieved_for(gen, bank, 3):
        assert r.info.text == bank.sources[0]["text"][r.info.char_start:r.info.char_end]


def test_backbone_only_generation_ignores_memory(tiny_model):
    prompt = tiny_model.chat_ids("hello")
    a = tiny_model.generate(prompt, _filled_bank(tiny_model), max_new_tokens=4, backbone_only=True)
    b = tiny_model.generate(prompt, None, max_new_tokens=4, backbone_only=True)
    assert list(a) == list(b)


def test_fixed_memory_position_policy(make_model):
    ids = None
    outs = {}
    for policy in ("none", "fixed"):
        model = make_model("tiny", memory_position=policy, memory_distance=64, memory_branch="open")
        ids = _ids(model) if ids is None else ids
        outs[policy] = model(ids, _filled_bank(model)).logits
    assert not torch.allclose(outs["none"], outs["fixed"])
    with pytest.raises(ValueError, match="RoPE"):
        make_model("tiny-gpt2", memory_position="fixed")


@pytest.mark.parametrize("bad", [dict(top_k=5, chunk_size=2), dict(chunk_size=0), dict(memory_position="near"),
                                 dict(capacity=1, chunk_size=2), dict(side_init="x"), dict(index="hnsw")])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        LongMemConfig(**bad)


def test_memory_layer_out_of_range(make_model):
    with pytest.raises(ValueError, match="memory_layer"):
        make_model("tiny", memory_layer=4)


def test_library_does_not_import_gradio():
    import subprocess
    import sys
    code = "import longmem_core, longmem_core.cli, sys; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_idle_side_layers_are_skipped_without_changing_the_result(make_model):
    model = make_model("tiny")
    ids = _ids(model)
    bank = _filled_bank(model)
    with torch.no_grad():
        assert model.side._idle_layers(True) == {0}  # the memory layer (1) still runs
        fast = model(ids, bank).logits
    slow = model(ids, bank).logits  # grad enabled: every layer runs
    assert torch.allclose(fast, slow.detach(), atol=1e-6)


def test_per_call_top_k(make_model):
    model = make_model("tiny")  # config top_k=4, chunk size 2
    bank = _filled_bank(model)
    ids = _ids(model)
    wide = model(ids, bank, trace=True, top_k=8).trace
    assert wide.chunk_ids.shape[-1] == 4 and model(ids, bank, trace=True).trace.chunk_ids.shape[-1] == 2
    assert torch.equal(model(ids, bank, top_k=4).logits, model(ids, bank).logits)
    with pytest.raises(ValueError, match="multiple"):
        model(ids, bank, top_k=3)
    scores, tr = model.score_labels("x", [" a", " b"], bank, trace=True, top_k=6)
    assert tr.chunk_ids.shape[-1] == 3
    gen = model.generate(model.chat_ids("q"), bank, max_new_tokens=2, top_k=8)
    assert "".join(gen) == gen.text and gen.token_ids
    ids = model.chat_ids("q")
    for _ in gen.token_ids:  # the same tokens without a KV cache, retrieving 8 tokens per query and head
        ids.append(int(model(torch.tensor([ids]), bank, top_k=8).logits[0, -1].argmax()))
    assert ids[-len(gen.token_ids):] == gen.token_ids


def test_checkpoint_on_another_copy_of_the_same_architecture_loads_with_a_warning(make_model, tmp_path):
    from longmem_core import load_backbone
    path = make_model("tiny").save_checkpoint(tmp_path / "c.safetensors")
    other = LongMemModel(preset("tiny"), backbone=load_backbone("tiny-llama", seed=7))  # same shapes, other weights
    with pytest.warns(UserWarning, match="another copy"):
        other.load_checkpoint(path)
    gpt2 = make_model("tiny-gpt2")
    with pytest.raises(CheckpointMismatchError, match="another backbone"):
        gpt2.load_checkpoint(path)


def test_model_remembers_its_checkpoint(make_model, tmp_path):
    model = make_model("tiny")
    assert model.checkpoint_path is None
    path = model.save_checkpoint(tmp_path / "c.safetensors")
    model.load_checkpoint(path)
    assert model.checkpoint_path == str(path)


def test_trained_parts_name_what_a_checkpoint_set(make_model, tmp_path):
    from longmem_core.training import select_trainable
    assert make_model("tiny").trained_parts() == set()
    searcher = make_model("tiny", memory_query_rank=4)
    for p in searcher.side.parameters():
        p.requires_grad_(False)
    searcher.side.q_mem_down.requires_grad_(True)
    searcher.side.q_mem_up.requires_grad_(True)
    path = searcher.save_checkpoint(tmp_path / "search.safetensors")
    loaded = make_model("tiny", memory_query_rank=4)
    loaded.load_checkpoint(path)
    assert loaded.trained_parts() == {"search"}
    select_trainable(loaded, "memory")  # the delta, loaded, is saved again with the memory layer and gates
    loaded.load_checkpoint(loaded.save_checkpoint(tmp_path / "memory.safetensors"))
    assert loaded.trained_parts() == {"search", "memory_layer"}
    everything = make_model("tiny")
    everything.load_checkpoint(everything.save_checkpoint(tmp_path / "all.safetensors"))
    assert everything.trained_parts() == {"memory_layer", "side_layers"}


def test_device_selection_is_explicit_and_checked():
    from longmem_core.model.model import resolve_device
    assert resolve_device(None).type == "cpu" and resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
    model = LongMemModel.load(backbone="tiny-llama", device="cpu", chunk_size=2, top_k=4, capacity=64, segment_length=16)
    assert model.device.type == "cpu" and model.new_bank().device.type == "cpu"


def test_memory_on_the_device_path_gives_the_same_answer(make_model):
    """The bank's device search (torch exact top-k, used on a GPU) gives the same logits as faiss; on a CPU here."""
    from longmem_core.memory.memory_bank import FlatIndex
    model = make_model("tiny")
    bank = _filled_bank(model)
    ids = _ids(model)
    expected = model(ids, bank).logits
    means = torch.from_numpy(bank.chunk_keys())
    bank.index = FlatIndex(bank.n_kv_heads, bank.head_dim, use_faiss=False)
    bank.index.add(means, bank.first_id)
    assert torch.allclose(model(ids, bank).logits, expected, atol=1e-5)


def test_memory_query_delta_moves_search_and_by_choice_the_memory_attention(make_model):
    search_only = make_model("tiny", memory_query_rank=4, memory_branch="open")
    both = make_model("tiny", memory_query_rank=4, memory_query_delta_in_attention=True, memory_branch="open")
    plain = make_model("tiny", memory_branch="open")
    with torch.no_grad():
        for m in (search_only, both):
            m.side.q_mem_down.weight.copy_(torch.randn_like(m.side.q_mem_down.weight))
            m.side.q_mem_up.weight.copy_(torch.randn_like(m.side.q_mem_up.weight))
    both.side.q_mem_down.weight.data.copy_(search_only.side.q_mem_down.weight)
    both.side.q_mem_up.weight.data.copy_(search_only.side.q_mem_up.weight)
    bank, ids = _filled_bank(plain), _ids(plain)
    a, b, p = (m(ids, bank, trace=True) for m in (search_only, both, plain))
    assert torch.equal(a.trace.chunk_ids, b.trace.chunk_ids)  # the same search
    assert not torch.equal(a.trace.chunk_ids, p.trace.chunk_ids)  # ... which the delta changed
    assert not torch.allclose(a.logits, b.logits)  # attention weighs the hits differently
