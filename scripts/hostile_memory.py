"""The app's peak memory through the hostile inputs of issues 15 and 27 (not part of the test run): the app is served
in a child process on 127.0.0.1 with the default model and settings, one gradio_client session fills its memory
with a short document, then every hostile case is sent (most are refused; a few are allowed at their limit),
each checked for the outcome it should have. The server's resident memory is read when it is ready and idle
(``idle``) and its peak over the whole suite (Linux VmHWM, reset once the server is idle; RSS is also sampled
every 0.1 s); the target is a peak under twice the idle size.

    OMP_NUM_THREADS=1 python scripts/hostile_memory.py --json     # experiments/results/hostile_memory.json
    python scripts/hostile_memory.py --model tiny      # a random tiny model: a fast look at the cases only
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_S = 300  # the server must say it is ready within this
TIMEOUT_S = 600  # one call of the client


def serve(model_name: str, port: int) -> None:
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from app.ui import build_demo, launch_options
    if model_name == "tiny":
        from longmem_core import LongMemModel, load_backbone, preset
        demo = build_demo(LongMemModel(preset("tiny"), backbone=load_backbone("tiny-llama")), max_new_tokens=8)
    else:
        demo = build_demo()  # the default model, checkpoint and settings: what `python app.py` serves
    demo.launch(**launch_options(demo.longmem.settings, server_name="127.0.0.1", server_port=port,
                                 prevent_thread_lock=True, quiet=True, inbrowser=False))
    print(f"READY {demo.local_url}", flush=True)
    while True:
        time.sleep(3600)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


class Sampler(threading.Thread):
    """The largest VmRSS of a process, sampled every 0.1 s (beside VmHWM, which sees between samples)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            try:
                self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS:"))
            except (OSError, RuntimeError):
                return
            time.sleep(0.1)


# -- the cases --

def _entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _tensors(entries: dict[str, bytes], change) -> dict[str, bytes]:
    from safetensors.torch import load, save
    t = load(entries["tensors.safetensors"])
    change(t)
    return {**entries, "tensors.safetensors": save({k: v.contiguous() for k, v in t.items()})}


def _bomb(path: Path, good: dict[str, bytes], size: int) -> Path:
    """A bank whose meta.json holds one source of ``size`` bytes of one letter (deflates ~1000:1)."""
    meta = json.loads(good["meta.json"])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tensors.safetensors", good["tensors.safetensors"])
        with zf.open("meta.json", "w") as f:
            f.write(json.dumps({**meta, "sources": []})[:-1].encode() + b', "pad": "')
            for at in range(0, size, 1 << 22):
                f.write(b"a" * min(1 << 22, size - at))
            f.write(b'"}')
    return path


def run_cases(url: str, folder: Path, pid: int) -> list[dict]:
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    cases: list[dict] = []

    def case(name: str, expect: str, call) -> None:
        """Run ``call``; ``expect``: 'refused: <regex>' or 'ok'. The outcome and the time go in ``cases``."""
        t0 = time.monotonic()
        reset_peak(pid)
        try:
            detail = call()
            outcome = "ok"
        except (AppError, ValueError) as exc:
            outcome, detail = "refused", str(exc).splitlines()[0][:200]
        kind, _, pattern = expect.partition(": ")
        met = outcome == kind and (not pattern or bool(re.search(pattern, str(detail))))
        cases.append({"case": name, "expected": expect, "outcome": outcome, "detail": str(detail)[:200], "met": met,
                      "seconds": round(time.monotonic() - t0, 1), "peak_mb": round(status_kb(pid, "VmHWM:") / 1024, 1)})
        print(f"{'ok ' if met else 'NOT'} {name}: {outcome} {str(detail)[:100]} (peak {cases[-1]['peak_mb']:,.0f} MB)",
              file=sys.stderr, flush=True)

    def raw(api: str, given: dict, session_hash: str) -> str:
        params = c.view_api(print_info=False, return_format="dict")["named_endpoints"][f"/{api}"]["parameters"]
        values = {p["parameter_name"]: p["parameter_default"] if p["parameter_has_default"] else None for p in params}
        values.update(given)
        body = json.dumps({"data": [values[p["parameter_name"]] for p in params], "session_hash": session_hash})
        event = httpx.post(f"{url}gradio_api/call/{api}", content=body,
                           headers={"content-type": "application/json"}).json()
        text = httpx.get(f"{url}gradio_api/call/{api}/{event['event_id']}", timeout=TIMEOUT_S).text
        if "event: error" in text:
            raise ValueError(text.split("data:", 1)[-1].strip())
        return "answered"

    def write(name: str, data: str | bytes) -> str:
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return str(path)

    c = Client(url, verbose=False, httpx_kwargs={"timeout": TIMEOUT_S}, download_files=str(folder))
    other = Client(url, verbose=False, httpx_kwargs={"timeout": TIMEOUT_S}, download_files=str(folder))
    try:
        book = (ROOT / "assets" / "the_time_machine.txt").read_text(encoding="utf-8")[:20_000]
        case("a 20 KB document read into memory (set-up)", "ok",
             lambda: c.predict(files=[handle_file(write("book.txt", book))], api_name="/memorize")[2]["tokens"])
        case("a question (set-up)", "ok", lambda: c.predict("Who is the Time Traveller?", api_name="/chat")[3]["answer"][:60])
        html = c.predict(api_name="/save_bank")
        link = re.search(r'href="([^"]+)"', html).group(1)
        good = _entries(httpx.get(url + link).content)

        # issue 27, case 1: lengths
        long_demo = "lovely " * 140
        case("1. a text to classify at its limit (2,000 characters; bundled SST-2 set, k=40)", "ok",
             lambda: c.predict(text=("a gripping , beautifully acted film . " * 60)[:2000], k=40,
                               api_name="/classify")[5]["text"]["label"])
        case("1. a text to classify of 8 KB", "refused: 8,000 characters long; the limit is 2,000",
             lambda: c.predict(text="x" * 8000, api_name="/classify"))
        case("1. a test file with a 1 MB row", "refused: row 2: the text to classify is 1,000,000 characters",
             lambda: c.predict(text="", test_file=handle_file(write("test.jsonl", '{"text": "ok"}\n' + json.dumps(
                 {"text": "y" * 1_000_000}) + "\n")), api_name="/classify"))
        case("1. a demonstration of 8 KB", "refused: row 2: the demonstration is 8,000 characters",
             lambda: c.predict(choice="My uploaded file", upload=handle_file(write(
                 "demos.csv", "text,label\nfine,pos\n" + "x" * 8000 + ",neg\n")), text="a film", api_name="/classify"))
        case("1. 40 demonstrations near their limit, k=40", "refused: tokens long; the limit is 4,096",
             lambda: c.predict(choice="My uploaded file", upload=handle_file(write("long.csv", "text,label\n" + "".join(
                 f"{long_demo}{i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)))), k=40, text="a film",
                 api_name="/classify"))
        case("1. a question of 100,000 characters", "refused: the limit is 2,000",
             lambda: c.predict("q" * 100_000, api_name="/chat"))

        # case 2: a bank whose every chunk spans a 20 KB source text; a bank of 400 sources with long names
        def wide(t) -> None:
            t["chunk_chars"][:, 0], t["chunk_chars"][:, 1] = 0, 20_000
        meta = json.loads(good["meta.json"])
        meta["sources"] = [{"name": "wide.txt", "text": "word " * 4000}]
        wide_bank = _zip(folder / "wide.zip", {**_tensors(good, wide), "meta.json": json.dumps(meta).encode()})
        case("2. a bank whose chunks each span a 20 KB text", "refused: span [\\d,]+ characters in all",
             lambda: c.predict(handle_file(str(wide_bank)), api_name="/load_bank"))
        meta = json.loads(good["meta.json"])
        meta["sources"] = [{**meta["sources"][0], "name": f"doc{i}-" + "n" * 2000} for i in range(400)]

        def spread(t) -> None:
            t["chunk_source"][:] = torch.arange(len(t["chunk_source"])) % 400
        import torch
        many = _zip(folder / "many.zip", {**_tensors(good, spread), "meta.json": json.dumps(meta).encode()})
        case("2. a bank of 400 sources with 2,000-character names (map HTML, KB)", "ok",
             lambda: round(len(c.predict(handle_file(str(many)), api_name="/load_bank")[3].encode()) / 1e3, 1))
        c.predict(files=[handle_file(write("book.txt", book))], api_name="/memorize")  # the document again

        # case 3: compression
        case("3. a 150 MB meta.json deflated to under 1 MB", "refused: times its size",
             lambda: c.predict(handle_file(str(_bomb(folder / "bomb.zip", good, 150_000_000))), api_name="/load_bank"))

        # case 4: a saved bank is a one-time link, never a path another session loads
        saved_html = c.predict(api_name="/save_bank")
        case("4. /save_bank's answer holds no server path", "ok: ^no path$",
             lambda: "no path" if "/tmp" not in saved_html and "file=" not in saved_html else "a server path")
        saved_url = url + re.search(r'href="([^"]+)"', saved_html).group(1)
        case("4. the link, downloaded twice", "ok: ^\\[200, 404\\]$",
             lambda: [httpx.get(saved_url).status_code for _ in range(2)])
        c.predict(api_name="/save_bank")  # a saved bank on the server again, not downloaded
        work = sorted(Path(tempfile.gettempdir()).glob("longmem-studio-*/bank-*/*.zip"), key=lambda p: p.stat().st_mtime)
        other.predict(api_name="/clear")
        name = c.view_api(print_info=False, return_format="dict")["named_endpoints"]["/load_bank"]["parameters"][0]
        case("4. another session loads a saved bank by its server path", "refused",
             lambda: raw("load_bank", {name["parameter_name"]: {"path": str(work[-1]), "meta": {"_type": "gradio.FileData"}}},
                         other.session_hash))
        case("4. ...and the saved file is still there, the other session's memory empty", "ok: ^True$",
             lambda: work[-1].exists() and other.predict(api_name="/clear")[2]["tokens"] == 0)

        # case 5: chunks of no source
        def no_source(t) -> None:
            t["chunk_source"][:] = -1
            t["chunk_chars"][:] = -1
        meta = {**json.loads(good["meta.json"]), "sources": []}
        case("5. sources [] and chunk_source -1", "refused: every chunk must name one of them",
             lambda: c.predict(handle_file(str(_zip(folder / "nosource.zip", {**_tensors(good, no_source),
                                                                             "meta.json": json.dumps(meta).encode()}))),
                               api_name="/load_bank"))

        # case 7: numbers, encodings, nested values
        case("7. a NaN temperature", "refused: must be a number from 0 to 1.5, not nan",
             lambda: raw("chat", {"question": "Who?", "temperature": float("nan")}, c.session_hash))
        case("7. k as a word", "refused: must be a whole number from 0 to 40",
             lambda: raw("classify", {"text": "a film", "k": "many"}, c.session_hash))
        case("7. a null number of chunks listed", "refused: must be a whole number from 1 to 20, not None",
             lambda: raw("chat", {"question": "Who?", "top": None}, c.session_hash))
        case("7. a UTF-16 document with its BOM", "ok",
             lambda: c.predict(files=[handle_file(write("utf16.txt", book[:4000].encode("utf-16")))],
                               api_name="/memorize")[2]["tokens"])
        case("7. a nested label in a demonstration file", "refused: line 2: 'label' is a nested value",
             lambda: c.predict(choice="My uploaded file", upload=handle_file(write("nested.jsonl", json.dumps(
                 {"text": "fine", "label": "pos"}) + "\n" + json.dumps({"text": "bad", "label": {"neg": True}}) + "\n")),
                 text="a film", api_name="/classify"))

        # issue 15's cases, again
        case("15. a binary file named .txt", "refused: looks like a binary file",
             lambda: c.predict(files=[handle_file(write("bin.txt", secrets.token_bytes(4096)))], api_name="/memorize"))
        case("15. a bank claiming a capacity of 2^40 tokens", "refused: capacity",
             lambda: c.predict(handle_file(str(_zip(folder / "huge.zip", {**good, "meta.json": json.dumps(
                 {**json.loads(good["meta.json"]), "capacity": 1 << 40, "first_id": 10 ** 15}).encode()}))),
                 api_name="/load_bank"))
        case("a question after all of it (memory intact)", "ok",
             lambda: c.predict("Who is the Time Traveller?", api_name="/chat")[3]["memory_tokens"])
    finally:
        c.close()
        other.close()
    return cases


def reset_peak(pid: int) -> bool:
    """VmHWM := VmRSS for process ``pid`` (Linux clear_refs 5); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(model: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="longmem-hostile-"))
    port = 7990 + os.getpid() % 9
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "LONGMEM_BROWSER": "0"}
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--model", model, "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end, url = time.monotonic() + START_S, None
        while url is None and time.monotonic() < end:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("the server exited before it was ready")
            if line.startswith("READY "):
                url = line.split()[1]
        threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()  # drain
        time.sleep(5)
        idle_kb = status_kb(server.pid, "VmRSS:")
        hwm_reset = reset_peak(server.pid)  # from here VmHWM is the suite's peak (reset before each case)
        sampler = Sampler(server.pid)
        sampler.start()
        cases = run_cases(url, folder, server.pid)
        sampler.running = False
        peak_kb = max([sampler.peak_kb, idle_kb] + [int(c["peak_mb"] * 1024) for c in cases if hwm_reset])
        end_kb = status_kb(server.pid, "VmRSS:")
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    ratio = peak_kb / idle_kb
    met = all(c["met"] for c in cases)
    sys.path.insert(0, str(ROOT))
    from longmem_core.bench.bench import machine
    return {
        "title": "Hostile inputs: the app's peak memory (scripts/hostile_memory.py)",
        "command": "OMP_NUM_THREADS=1 python scripts/hostile_memory.py --json" + ("" if model == "default" else
                                                                                   f" --model {model}"),
        "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "summary": f"The app on the {model} model, served in a child process; {len(cases)} requests of issues 15 and "
                   "27 from one gradio_client session (and a second one for the saved-bank path). Idle: resident "
                   "memory once the server is ready; peak: VmHWM from then to the end of the suite (and 0.1-s "
                   "samples of VmRSS).",
        "model": model, "idle_mb": round(idle_kb / 1024, 1), "peak_mb": round(peak_kb / 1024, 1),
        "end_mb": round(end_kb / 1024, 1), "peak_over_idle": round(ratio, 3), "vmhwm_reset": hwm_reset,
        "cases_met": sum(c["met"] for c in cases), "rows": cases,
        "claims": [{"title": "hostile inputs", "rows": [
            {"metric": "peak resident memory through the hostile suite / idle",
             "figure": f"{ratio:.2f}x ({idle_kb / 1024:,.0f} -> {peak_kb / 1024:,.0f} MB)", "baseline": "",
             "target": "under 2x", "met": "yes" if ratio < 2 else "no"},
            {"metric": "cases with the outcome they should have", "figure": f"{sum(c['met'] for c in cases)} of "
             f"{len(cases)}", "baseline": "", "target": "all", "met": "yes" if met else "no"}]}],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["default", "tiny"], default="default")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.model, args.port)
        return 0
    result = measure(args.model)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"idle {result['idle_mb']} MB, peak {result['peak_mb']} MB ({result['peak_over_idle']:.2f}x), "
              f"{result['cases_met']} of {len(result['rows'])} cases as expected")
    return 0 if result["peak_over_idle"] < 2 and result["cases_met"] == len(result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
