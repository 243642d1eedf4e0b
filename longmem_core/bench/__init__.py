"""The benchmark (bench): timings of memorizing, searching, answering and training (python -m longmem_core bench)."""
