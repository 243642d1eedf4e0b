"""The benchmark's pieces run and report what they claim, on a tiny model (no timing is asserted)."""
import json

import torch

from longmem_core.answer import answer
from longmem_core.bench import bench


def test_retrieval_scaling_reports_every_size_and_a_plot(make_model, tmp_path, book_text):
    model = make_model("tiny", capacity=4096)
    figures, real = bench.memorize_throughput(model, book_text[:3000], max_tokens=600, rounds=2)
    assert figures["memorize_tokens"] == len(real) == 600 and figures["memorize_speedup"] > 0
    assert len(figures["memorize_speedup_per_round"]) == 2 and figures["memorize_workers"] >= 1
    for key in ("memorize_sequential_tokens_per_s", "plain_forward_threaded_tokens_per_s",
                "memorize_speedup_sequential", "memorize_speedup_vs_threaded_plain",
                "up_to_memory_layer_tokens_per_s", "memorize_limit"):
        assert figures[key] > 0
    assert figures["plain_forward_precision"] == figures["memorize_precision"]  # the headline ratio: like with like
    assert 0 < figures["memorize_forward_share"] < 1 and figures["memory_layer"] < figures["backbone_blocks"]
    queries = bench.real_queries(model, real, book_text[5000:6000], 40)
    assert queries.shape == (40, model.backbone.n_heads, model.backbone.head_dim)
    r = bench.retrieval_scaling(model, real, queries, [512, 2048], n_chunks=2, nprobes=(1, 4), disk_at=512)
    for key in ("exact_ms_per_generated_token", "ivf_ms_per_generated_token", "recall_at_16", "ram_bytes_per_token_ivf"):
        assert set(r[key]) == {"512", "2048"}
    assert all(0.0 <= v <= 1.0 for v in r["recall_at_16"].values())
    assert r["nprobe_sweep"]["2048"]["4"]["recall_at_16"] >= r["nprobe_sweep"]["2048"]["1"]["recall_at_16"]
    assert r["disk_bytes_per_token"] > 0
    figure = bench.scaling_figure({"retrieval": r})
    lines = [line for ax in figure.axes for line in ax.get_lines()]
    assert len(figure.axes) == 2 and len(lines) == 4  # exact and IVF in each panel
    assert all(list(line.get_xdata()) == [512, 2048] for line in lines)
    png = bench.plot_scaling({"retrieval": r}, tmp_path / "plot.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_a_run_writes_the_json_the_results_page_reads(tmp_path):
    result = {"command": "python -m longmem_core bench", "date": "2026-12-02", "memorize_speedup": 2.0}
    path = bench.write_result(result, tmp_path / "results" / "bench.json")
    assert json.loads(path.read_text()) == result
    assert bench._command(True, None, "cuda") == "python -m longmem_core bench --quick --device cuda"
    assert bench._command(False, "p.png", None, "b.json") == "python -m longmem_core bench --out b.json --plot p.png"
    assert bench.machine()["cores"] >= 1


def test_resampled_keys_keep_the_real_shape(make_model, book_text):
    model = make_model("tiny")
    _, real = bench.memorize_throughput(model, book_text[:2000], max_tokens=64)
    keys = bench.resampled_keys(real, 100, torch.Generator().manual_seed(0))
    assert keys.shape == (100, model.backbone.n_kv_heads, model.backbone.head_dim)
    spread = real.keys.float().reshape(-1, model.backbone.head_dim).std(0)
    assert torch.allclose(keys.reshape(-1, keys.shape[-1]).std(0), spread, rtol=0.5)


def test_generation_and_training_figures(make_model):
    model = make_model("tiny")
    bank = model.new_bank()
    model.memorize("some text to remember " * 20, bank)
    gen = bench.generation_speed(model, bank, new_tokens=6, rounds=2)
    assert gen["memory_tokens_per_s"] > 0 and gen["ratio_vs_transformers_generate"] > 0
    assert len(gen["ratio_vs_backbone_per_round"]) == 2
    train = bench.training_speed(model, "a longer text for one training step " * 30, "memory", steps=1)
    assert train["tokens_per_s"] > 0 and train["params"] > 0
    assert all(p.requires_grad for p in model.side.parameters())


def test_time_to_first_token_reports_cold_warm_and_its_parts(make_model, book_text):
    model = make_model("tiny")
    _, real = bench.memorize_throughput(model, book_text[:2000], max_tokens=64)
    text = book_text[:1500]
    n = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    bank = bench.answer_bank(model, real, text, tokens=n + n // 2)
    assert len(bank) == n + n // 2 and len(bank.sources) == 2  # the text, then its opening again
    for cid in bank.chunk_ids[::10]:  # every chunk maps back to its text, as a memorized bank's do
        info = bank.chunk_info(int(cid))
        assert info.text and info.text in text
    t = bench.time_to_first_token(model, bank)
    assert t["mode"] == answer.DEFAULT_MODE and t["bank_tokens"] == len(bank)
    for key in ("cold_s", "warm_s", "cold_prepare_s", "warm_prepare_s", "search_s", "copy_cache_build_s",
                "prefill_first_token_s"):
        assert 0 < t[key] < 60, key
    assert t["copy_cache_tokens"] > 0.95 * len(bank) and t["prompt_tokens"] > 5


def test_memorizing_in_bfloat16_is_compared_like_with_like_and_the_mixed_ratio_is_labelled(make_model, book_text):
    model = make_model("tiny", memorize_precision="bfloat16")
    figures, _ = bench.memorize_throughput(model, book_text[:2000], max_tokens=200)
    assert figures["memorize_precision"] == figures["plain_forward_precision"] == "bfloat16"
    for key in ("memorize_float32_tokens_per_s", "plain_forward_float32_tokens_per_s", "memorize_speedup_float32",
                "memorize_speedup_mixed_precision"):
        assert figures[key] > 0


def test_the_share_of_the_forward_memorizing_runs_bounds_the_speedup_near_1_75x():
    """SmolLM2-135M's shapes (on the meta device: no weights): memorizing runs blocks 0-20 and the keys and values
    of block 21 of 30, no LM head, over a 1,024-token segment: 57% of the work, so at most ~1.75x."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            lin = lambda i, o: nn.Linear(i, o, bias=False, device="meta")  # noqa: E731
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = lin(576, 576), lin(576, 192), lin(576, 192), lin(576, 576)
            self.mlp = nn.ModuleList([lin(576, 1536), lin(576, 1536), lin(1536, 576)])
            self.norm = nn.LayerNorm(576, device="meta")  # vectors are not matrix products

    class Backbone:
        n_heads, head_dim = 9, 64
        blocks = [Block() for _ in range(30)]
        lm_head = nn.Linear(576, 49152, bias=False, device="meta")

    share = bench.forward_share(Backbone(), memory_layer=21, tokens=1024)
    assert abs(1 / share - 1.75) < 0.01
    assert bench.forward_share(Backbone(), memory_layer=10, tokens=1024) < share
