"""LongMem Studio's Gradio app, built only on longmem_core's public API."""
