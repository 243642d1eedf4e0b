"""Start LongMem Studio in the browser: python app.py"""
from app.ui import build_demo

if __name__ == "__main__":
    build_demo().launch(inbrowser=True)
