"""The benchmark (bench): timings of memorizing, searching, answering and training (python -m longmem_core bench).

The names the results page's recorded commands call (``from longmem_core import bench; bench.forward_share(...)``,
written when the bench was one module) are the suite's, here as well."""
from .bench import BOOK, answer_bank, forward_share, machine, run, time_to_first_token

__all__ = ["BOOK", "answer_bank", "forward_share", "machine", "run", "time_to_first_token"]
