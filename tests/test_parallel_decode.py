"""Decoding with the SideNet in a second thread beside the backbone gives what one thread gives."""
import threading

import pytest
import torch

from longmem_core.model import model as model_module
from longmem_core.model.decode_schedule import DecodeSchedule
from longmem_core.model.threads import HiddenStream, single_threaded_ops

TEXT = "The Time Traveller (for so it will be convenient to speak of him) was expounding a recondite matter. " * 6


@pytest.fixture()
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # the pipelined path needs at least two
    yield
    torch.set_num_threads(saved)


def _busy_model(make_model, **overrides):
    """A tiny model whose every side layer runs and matters, with a memory gate open."""
    model = make_model("tiny", **overrides)
    with torch.no_grad():
        model.side.scale.fill_(0.7)
        model.side.gate.fill_(1.0)
        g = torch.Generator().manual_seed(0)
        for layer in model.side.layers:
            for p in layer.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    bank = model.new_bank(capacity=4096)
    model.memorize(TEXT, bank)
    model.decode_schedule.chosen = True  # where parallel_decode allows it, always beside (not measured here)
    return model, bank


@pytest.mark.parametrize("name", ["tiny", "tiny-gpt2"])
def test_two_thread_decode_matches_one_thread(make_model, two_threads, monkeypatch, name):
    model, bank = _busy_model(make_model) if name == "tiny" else _busy_model(make_model, backbone="tiny-gpt2",
                                                                              memory_position="none")
    calls = []
    real = model_module.LongMemModel._decode_in_two_threads
    monkeypatch.setattr(model_module.LongMemModel, "_decode_in_two_threads",
                        lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    prompt = model.chat_ids("What did the Time Traveller expound?")
    runs = {}
    for parallel in (False, True):
        model.cfg.parallel_decode = parallel
        gen = model.generate(prompt, bank, max_new_tokens=8)
        list(gen)
        runs[parallel] = (gen.token_ids, gen.chunk_mass, gen.memory_share)
    assert len(calls) == len(runs[True][0]) - 1 + (len(runs[True][0]) < 8)  # every step after the prompt
    assert runs[True][0] == runs[False][0] and len(runs[True][0]) > 0
    assert runs[True][1].keys() == runs[False][1].keys()
    assert runs[True][2] == pytest.approx(runs[False][2], abs=1e-6)
    assert torch.get_num_threads() == 2


def test_two_thread_step_logits_and_caches_match(make_model, two_threads):
    model, bank = _busy_model(make_model)
    ids = torch.tensor([model.chat_ids("Who speaks?")])
    outs = {}
    for parallel in (False, True):
        model.cfg.parallel_decode = parallel
        caches = model_module.ModelCaches.empty(model)
        with torch.no_grad():
            model(ids, bank, caches=caches)  # the prompt: one thread either way
            step = model(torch.tensor([[5]]), bank, caches=caches, trace=True)
        outs[parallel] = (step.logits, step.trace.chunk_ids, [c.k for c in caches.side if c.k is not None])
    assert torch.allclose(outs[True][0], outs[False][0], atol=1e-6)
    assert torch.equal(outs[True][1], outs[False][1])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(outs[True][2], outs[False][2]))


def test_backbone_error_in_a_two_thread_step_reaches_the_caller(make_model, two_threads, monkeypatch):
    model, bank = _busy_model(make_model)
    caches = model_module.ModelCaches.empty(model)
    with torch.no_grad():
        model(torch.tensor([model.chat_ids("Hi")]), bank, caches=caches)
    block = model.backbone.blocks[1]

    def broken(*args, **kwargs):
        raise RuntimeError("block failed")
    monkeypatch.setattr(block, "forward", broken)
    done = []

    def step():
        with pytest.raises(RuntimeError, match="block failed"), torch.no_grad():
            model(torch.tensor([[5]]), bank, caches=caches)
        done.append(True)
    t = threading.Thread(target=step)
    t.start()
    t.join(timeout=60)
    assert done == [True], "the step hung or did not raise"
    assert torch.get_num_threads() == 2


def test_hidden_stream_waits_for_what_is_not_there_yet():
    stream = HiddenStream()
    got = []
    reader = threading.Thread(target=lambda: got.append(stream[1]))
    reader.start()
    stream.append(torch.zeros(1))
    reader.join(timeout=0.2)
    assert reader.is_alive() and not got  # still waiting for the second one
    stream.append(torch.ones(1))
    reader.join(timeout=10)
    assert got and torch.equal(got[0], torch.ones(1)) and len(stream) == 2
    stream.fail(ValueError("stop"))
    with pytest.raises(RuntimeError):
        stream[2]
    assert torch.equal(stream[0], torch.zeros(1))  # what was published stays readable


def test_single_threaded_sections_overlap_and_restore(two_threads):
    with single_threaded_ops():
        assert torch.get_num_threads() == 1
        with single_threaded_ops():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_two_generations_at_once_each_get_their_own_answer(make_model, two_threads):
    """Two app sessions decoding at the same time share the side pool and the one-thread sections."""
    model, bank = _busy_model(make_model)
    prompts = [model.chat_ids("What did the Time Traveller expound?"), model.chat_ids("Who was there?")]
    alone = []
    for p in prompts:
        gen = model.generate(p, bank, max_new_tokens=8)
        list(gen)
        alone.append(gen.token_ids)
    together: list = [None, None]

    def run(i):
        gen = model.generate(prompts[i], bank, max_new_tokens=8)
        list(gen)
        together[i] = gen.token_ids
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert together == alone
    assert torch.get_num_threads() == 2


def test_the_schedule_alternates_then_keeps_the_faster():
    for faster in (True, False):
        schedule = DecodeSchedule(warmup=1, trials=3)
        picks = []
        while schedule.chosen is None:
            beside = schedule.pick()
            picks.append(beside)
            schedule.record(beside, 0.01 if beside == faster else 0.02)
        assert picks == [True, False] * 4  # one warm-up and three timed steps each, alternating
        assert schedule.chosen is faster and schedule.pick() is faster
        schedule.record(not faster, 0.0)  # once chosen, later timings change nothing
        assert schedule.pick() is faster


def test_a_model_measuring_its_schedule_decodes_the_same_tokens(make_model, two_threads, monkeypatch):
    model, bank = _busy_model(make_model)
    prompt = model.chat_ids("What did the Time Traveller expound?")
    model.cfg.parallel_decode = False
    expected = model.generate(prompt, bank, max_new_tokens=8)
    list(expected)
    model.cfg.parallel_decode = True
    model.decode_schedule = DecodeSchedule(warmup=1, trials=2)  # decided after 6 steps, within this answer
    calls = []
    real = model_module.LongMemModel._decode_in_two_threads
    monkeypatch.setattr(model_module.LongMemModel, "_decode_in_two_threads",
                        lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    got = model.generate(prompt, bank, max_new_tokens=8)
    list(got)
    assert got.token_ids == expected.token_ids
    assert 0 < len(calls) < len(got.token_ids) - 1 or len(got.token_ids) <= 2  # some steps beside, some after
    assert sum(model.decode_schedule.seen.values()) >= min(6, len(got.token_ids) - 1)
