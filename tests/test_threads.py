import threading

import pytest
import torch

from longmem_core.model.threads import default_workers, ordered_map


def test_ordered_map_keeps_order_and_restores_torch_threads():
    before = torch.get_num_threads()
    seen_threads = set()

    def work(i):
        seen_threads.add(threading.get_ident())
        assert torch.get_num_threads() == 1  # each worker computes on one intra-op thread
        return i * i

    assert list(ordered_map(work, range(20), workers=2)) == [i * i for i in range(20)]
    assert torch.get_num_threads() == before
    assert threading.get_ident() not in seen_threads


def test_ordered_map_with_one_worker_is_plain_map():
    assert list(ordered_map(lambda i: i + 1, [1, 2, 3], workers=1)) == [2, 3, 4]


def test_ordered_map_reraises_and_restores_threads():
    before = torch.get_num_threads()

    def work(i):
        if i == 5:
            raise ValueError("bad item")
        return i

    with pytest.raises(ValueError, match="bad item"):
        list(ordered_map(work, range(10), workers=2))
    assert torch.get_num_threads() == before


def test_ordered_map_reads_ahead_a_bounded_number_of_items():
    started = []

    def work(i):
        started.append(i)
        return i

    it = ordered_map(work, range(100), workers=2)
    assert next(it) == 0
    assert len(started) <= 5  # at most 2 * workers submitted before the first result is handed over
    it.close()


def test_default_workers():
    assert default_workers("cpu") == torch.get_num_threads()
    assert default_workers("meta") == 1
