"""Soak test of the app (issue 15; not part of the test run): N loopback clients for M minutes of mixed
memorize / chat / classify / save / load / clear through gradio_client, against a server in a child process.

    python scripts/soak.py                       # 6 clients, 10 minutes, tiny model
    python scripts/soak.py --clients 3 --minutes 2 --model default --json

Each client reads its own document holding its own marker word and checks that nothing it gets back (stats,
retrieved chunks, saved banks) names another client's document or marker. The server's resident memory is
sampled every few seconds; after the warm-up (``--warmup``, a fraction of the run: 30%) its growth is reported
(target: within 10%). The server samples itself too (``probe``: glibc's live and freed-but-held heap, Python
objects, tensors), in ``server_memory`` of the report; ``Diagnosis`` adds tracemalloc and Gradio's per-session
state on request. The server listens on 127.0.0.1 only; every loop is bounded by the deadline and by a cap on
operations, so the script stops by itself.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACTIONS = {"memorize": 3, "chat": 5, "classify": 1, "save": 1, "load": 1, "clear": 1}  # relative frequency
MAX_OPS_PER_CLIENT = 10_000  # a hard bound on each client's loop, whatever the deadline
SERVER_START_S = 300  # the server must say it is ready within this
CLIENT_TIMEOUT_S = 120  # one HTTP call of a client (gradio_client's default, 20 s, is short on a loaded machine)
WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "heath", "indigo", "jade", "kelp", "loam"]
DEMOS = ("text,label\n" + "\n".join(f"{t},{label}" for t, label in [
    ("a fine and moving film", "positive"), ("dull and too long", "negative"), ("the cast is wonderful", "positive"),
    ("a tedious mess", "negative"), ("warm and funny", "positive"), ("i hated every minute", "negative")]) + "\n")


# -- the server (child process) --

def serve(model_name: str, port: int, concurrency: int, probe_s: float) -> None:
    """Build the app on the tiny or the default model, listen on 127.0.0.1:port, and run until killed."""
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from app.ui import build_demo, launch_options
    if model_name == "tiny":
        from longmem_core import LongMemModel, load_backbone, preset
        model = LongMemModel(preset("tiny"), backbone=load_backbone("tiny-llama"))
        # memory full: drop the oldest, as before the app asked first (a client reads its document again and again)
        demo = build_demo(model, capacity=8192, max_new_tokens=8, concurrency=concurrency, when_full="drop_oldest")
    else:
        demo = build_demo(max_new_tokens=16, concurrency=concurrency, when_full="drop_oldest")
    demo.launch(**launch_options(demo.longmem.settings, server_name="127.0.0.1", server_port=port,
                                 prevent_thread_lock=True, quiet=True, inbrowser=False))
    print(f"READY {demo.local_url}", flush=True)
    diagnosis = Diagnosis(demo)
    while True:
        print("PROBE " + json.dumps(probe()), flush=True)
        diagnosis.step()
        time.sleep(probe_s)


class Diagnosis:
    """Optional diagnosis of a growing server, chosen by environment variables (how the soak's growth was found):
    SOAK_TRACE_FILE: tracemalloc (SOAK_TRACE_FRAMES frames, default 1) from the server's start; from SOAK_TRACE_AT
    seconds on (default 60) the file holds where traced memory grew since then. SOAK_HOLDERS_FILE: what Gradio
    keeps between requests (``gradio_held``), rewritten at every sample. SOAK_MALLOC_TRIM_S: call glibc's
    malloc_trim(0) that often (does the allocator give back what it holds freed?)."""

    def __init__(self, demo) -> None:
        self.demo, self.t0, self.first = demo, time.monotonic(), None
        self.trace_file, self.holders_file = os.environ.get("SOAK_TRACE_FILE"), os.environ.get("SOAK_HOLDERS_FILE")
        self.trace_at = float(os.environ.get("SOAK_TRACE_AT", "60"))
        self.trim_s, self.trimmed = float(os.environ.get("SOAK_MALLOC_TRIM_S", "0")), time.monotonic()
        if self.trace_file:
            import tracemalloc
            tracemalloc.start(int(os.environ.get("SOAK_TRACE_FRAMES", "1")))  # only now: tracing the imports and
            # the page's build would take minutes

    def step(self) -> None:
        try:
            if self.trace_file and time.monotonic() - self.t0 > self.trace_at:
                self._trace()
            if self.holders_file:
                Path(self.holders_file).write_text(json.dumps(gradio_held(self.demo), indent=1))
            if self.trim_s and time.monotonic() - self.trimmed > self.trim_s:
                import ctypes
                ctypes.CDLL(None).malloc_trim(0)
                self.trimmed = time.monotonic()
        except Exception as exc:  # a diagnosis must not stop the server
            print(f"diagnosis failed: {exc!r}", flush=True)

    def _trace(self) -> None:
        import tracemalloc
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, f) for f in (__file__, tracemalloc.__file__, "*linecache.py")])
        if self.first is None:
            self.first = snapshot
            return
        top = snapshot.compare_to(self.first, "traceback")[:25]
        Path(self.trace_file).write_text("\n\n".join(str(d) + "\n" + "\n".join(d.traceback.format()[-12:])
                                                       for d in top))


def probe() -> dict:
    """What the server's memory is made of, now: resident bytes; glibc's heap (bytes in live allocations, and
    bytes freed but still held by the allocator, which is resident memory no object owns); threads; Python
    objects; bytes of the CPU tensors Python can reach; what tracemalloc traces (when it runs)."""
    import gc
    import tracemalloc

    import torch
    objects = gc.get_objects()
    storages = {}
    for obj in objects:  # tensors Python can reach: their storages, each counted once
        if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and obj.layout == torch.strided:
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    out = {"t": round(time.monotonic(), 1), "rss": rss_bytes(os.getpid()), "threads": threading.active_count(),
           "py_objects": len(objects), "tensor_bytes": sum(storages.values())}
    del objects
    info = _mallinfo2()
    if info is not None:
        out["malloc_in_use"] = info["uordblks"] + info["hblkhd"]
        out["malloc_free_held"] = info["fordblks"]
        out["malloc_arenas_bytes"] = info["arena"]
    if tracemalloc.is_tracing():
        out["tracemalloc"] = tracemalloc.get_traced_memory()[0]
    return out


def gradio_held(demo) -> dict:
    """Diagnosis: what Gradio keeps between requests: sessions, per-session component values (their characters),
    queue bookkeeping, open iterators."""
    def chars(x) -> int:
        if isinstance(x, str):
            return len(x)
        if isinstance(x, dict):
            return sum(chars(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return sum(chars(v) for v in x)
        return 0
    sessions = demo.state_holder.session_data
    queue = demo._queue
    app = getattr(demo, "server_app", None) or getattr(demo, "app", None)
    return {"sessions": len(sessions),
            "config_value_chars": {k[:8]: chars(v.config_values) for k, v in list(sessions.items())[:20]},
            "event_analytics": len(queue.event_analytics), "events": len(queue.event_ids_to_events),
            "pending_messages": {k[:8]: q.qsize() for k, q in list(queue.pending_messages_per_session.items())[:20]},
            "pending_event_ids": sum(len(v) for v in queue.pending_event_ids_session.values()),
            "iterators": len(getattr(app, "iterators", {}) or {}),
            "registry_sessions": len(demo.longmem.sessions),
            "biggest": _biggest(next(iter(sessions.values())).config_values, chars) if sessions else None}


def _biggest(values: dict, chars, depth: int = 4) -> dict:
    """The largest entries of a nested dict, by characters, a few levels down."""
    top = sorted(values.items(), key=lambda kv: -chars(kv[1]))[:3]
    return {str(k): ({"chars": chars(v), "inside": _biggest(v, chars, depth - 1)} if isinstance(v, dict) and depth
                     else {"chars": chars(v), "type": type(v).__name__,
                           "len": len(v) if hasattr(v, "__len__") else None}) for k, v in top}


def _mallinfo2() -> dict | None:
    """glibc's mallinfo2() as a dict (None where it is missing: not glibc, or glibc < 2.33)."""
    import ctypes
    fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
              "keepcost")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in fields]
    fn = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if fn is None:
        return None
    fn.restype = MallInfo2
    info = fn()
    return {f: getattr(info, f) for f in fields}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- the clients --

@dataclass
class ClientLog:
    index: int
    ops: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)  # time spent per action


def run_client(index: int, url: str, deadline: float, folder: Path, n_clients: int, log: ClientLog,
               actions: dict[str, int] = ACTIONS) -> None:
    from gradio_client import Client, handle_file
    rng = random.Random(index)
    marker = f"{WORDS[index % len(WORDS)]}{index}"
    others = [f"{WORDS[j % len(WORDS)]}{j}" for j in range(n_clients) if j != index]
    name = f"soak-client{index}.txt"
    doc = folder / name
    doc.write_text(" ".join(f"Client {index} keeps the word {marker} in line {n}." for n in range(30)), encoding="utf-8")
    demos = folder / f"demos{index}.csv"
    demos.write_text(DEMOS, encoding="utf-8")
    saved: str | None = None
    filled = False  # whether this client's memory holds anything (saving an empty one is refused, rightly)
    client = Client(url, verbose=False, httpx_kwargs={"timeout": CLIENT_TIMEOUT_S}, download_files=str(folder))

    def check_sources(stats: dict, where: str) -> None:
        foreign = [s["name"] for s in stats.get("sources", []) if s["name"] != name]
        if foreign:
            log.leaks.append(f"{where}: sources {foreign}")

    def check_text(text: str, where: str) -> None:
        seen = [m for m in others if m in text]
        if seen:
            log.leaks.append(f"{where}: another client's marker {seen[0]}")

    try:
        for _ in range(MAX_OPS_PER_CLIENT):
            if time.monotonic() > deadline:
                break
            action = rng.choices(list(actions), weights=list(actions.values()))[0]
            t0 = time.monotonic()
            try:
                if action == "memorize":
                    stats = client.predict(files=[handle_file(str(doc))], api_name="/memorize")[2]
                    check_sources(stats, "memorize")
                    filled = True
                elif action == "chat":
                    answer = client.predict(f"Which word does client {index} keep?", api_name="/chat")[3]
                    for chunk in answer["retrieved"]:
                        if chunk["source"] != name:
                            log.leaks.append(f"chat: retrieved a chunk of {chunk['source']}")
                        check_text(chunk["text"] + chunk.get("before", "") + chunk.get("after", ""), "chat")
                elif action == "classify":
                    result = client.predict(choice="My uploaded file", upload=handle_file(str(demos)), k=2,
                                            text=f"a warm film {marker}", api_name="/classify")[5]
                    if result["text"]["label"] not in ("positive", "negative"):
                        log.errors.append(f"classify: label {result['text']['label']!r}")
                elif action == "save":
                    if not filled:
                        action = "save (memory empty)"
                    else:
                        saved = download(url, client.predict(api_name="/save_bank"), folder / f"saved{index}.zip")
                        with zipfile.ZipFile(saved) as zf:
                            meta = json.loads(zf.read("meta.json"))
                        check_sources({"sources": meta["sources"]}, "save")
                        check_text(json.dumps(meta["sources"]), "save")
                elif action == "load":
                    if saved is None:
                        action = "load (nothing saved)"
                    else:
                        check_sources(client.predict(handle_file(saved), api_name="/load_bank")[2], "load")
                        filled = True
                elif action == "clear":
                    stats = client.predict(api_name="/clear")[2]
                    if stats["tokens"] != 0:
                        log.errors.append(f"clear: {stats['tokens']} tokens left")
                    filled = False
            except Exception as exc:  # every failure is counted with its message
                log.errors.append(f"{action}: {type(exc).__name__}: {str(exc)[:200]}")
            log.ops[action] += 1
            log.seconds[action] += time.monotonic() - t0
    finally:
        client.close()


def download(url: str, html: str, path: Path) -> str:
    """The saved bank behind the one-time link /save_bank answers with, written to ``path``."""
    import re

    import httpx
    link = re.search(r'href="([^"]+)"', html)
    if not link:
        raise RuntimeError(f"no download link in {html[:200]!r}")
    response = httpx.get(url + link.group(1), timeout=CLIENT_TIMEOUT_S)
    response.raise_for_status()
    path.write_bytes(response.content)
    return str(path)


# -- the run --

def soak(clients: int, minutes: float, model: str, warmup_fraction: float, sample_s: float, concurrency: int,
         actions: dict[str, int] = ACTIONS) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="longmem-soak-"))
    port = 7900 + os.getpid() % 90
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "LONGMEM_BROWSER": "0"}
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--model", model, "--port", str(port),
                               "--concurrency", str(concurrency), "--sample-s", str(sample_s)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        probes: list[dict] = []
        url = _wait_ready(server, probes)
        samples: list[tuple[float, int]] = []
        t_start = time.monotonic()
        deadline = t_start + minutes * 60
        logs = [ClientLog(i) for i in range(clients)]
        threads = [threading.Thread(target=run_client, args=(i, url, deadline, folder, clients, logs[i], actions),
                                    daemon=True)
                   for i in range(clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            samples.append((round(time.monotonic() - t_start, 1), rss_bytes(server.pid)))
            time.sleep(sample_s)
            if time.monotonic() > deadline + 600:  # a client stuck for 10 minutes past the end: give up on it
                break
        samples.append((round(time.monotonic() - t_start, 1), rss_bytes(server.pid)))
        return report(logs, samples, minutes, warmup_fraction, clients, model, probes, t_start)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(server: subprocess.Popen, probes: list[dict]) -> str:
    """The server's URL once it says it is ready; its later output is drained, its PROBE lines into ``probes``."""
    end = time.monotonic() + SERVER_START_S
    lines = []
    while time.monotonic() < end:
        line = server.stdout.readline()
        if not line:
            raise RuntimeError("the server exited:\n" + "".join(lines[-30:]))
        lines.append(line)
        if line.startswith("READY "):
            threading.Thread(target=_drain, args=(server, probes), daemon=True).start()
            return line.split()[1]
    raise RuntimeError("the server did not start in time")


def _drain(server: subprocess.Popen, probes: list[dict]) -> None:
    for line in server.stdout:
        if line.startswith("PROBE "):
            probes.append(json.loads(line[6:]))


def report(logs: list[ClientLog], samples: list[tuple[float, int]], minutes: float, warmup_fraction: float,
           clients: int, model: str, probes: list[dict] | None = None, t_start: float = 0.0) -> dict:
    warm_t = minutes * 60 * warmup_fraction
    after = [rss for t, rss in samples if t >= warm_t] or [samples[-1][1]]
    base = after[0]
    ops = sum((log.ops for log in logs), Counter())
    errors = [e for log in logs for e in log.errors]
    leaks = [x for log in logs for x in log.leaks]
    return {
        "clients": clients, "minutes": minutes, "model": model, "operations": dict(ops),
        "operations_total": sum(ops.values()), "errors": len(errors), "error_messages": errors[:20],
        "cross_session_leaks": len(leaks), "leak_messages": leaks[:20],
        "rss_mb": {"start": round(samples[0][1] / 1e6, 1), "after_warmup": round(base / 1e6, 1),
                   "max_after_warmup": round(max(after) / 1e6, 1), "end": round(samples[-1][1] / 1e6, 1)},
        "rss_growth_after_warmup": round(max(after) / base - 1, 4),
        "plateau_within_10pct": max(after) <= 1.10 * base,
        "warmup_s": warm_t, "samples": [(t, round(rss / 1e6, 1)) for t, rss in samples],
        "seconds_per_action": {a: round(sum(log.seconds[a] for log in logs) / max(ops[a], 1), 2) for a in ops},
        "server_memory": server_memory(probes or [], t_start, warm_t),
    }


def server_memory(probes: list[dict], t_start: float, warm_t: float) -> dict:
    """The server's own samples (``probe``) at the warm-up and at the end, and all of them as rows (MB)."""
    mb = ("rss", "malloc_in_use", "malloc_free_held", "malloc_arenas_bytes", "tracemalloc", "tensor_bytes")
    rows = [{"t": round(p["t"] - t_start, 1), **{k: round(p[k] / 1e6, 1) for k in mb if k in p},
             "threads": p["threads"], "py_objects": p["py_objects"]} for p in probes]
    after = [r for r in rows if r["t"] >= warm_t]
    return {"at_warmup": after[0] if after else None, "end": rows[-1] if rows else None, "samples": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", choices=["tiny", "default"], default="tiny",
                        help="tiny: a random tiny model (fast); default: the real backbone")
    parser.add_argument("--warmup", type=float, default=0.3, help="fraction of the run before RSS is judged")
    parser.add_argument("--sample-s", type=float, default=3.0, help="seconds between RSS samples")
    parser.add_argument("--concurrency", type=int, default=2, help="the app's concurrency setting")
    parser.add_argument("--actions", default=",".join(ACTIONS),
                        help=f"comma-separated subset of {', '.join(ACTIONS)} (to find which one a problem follows)")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.model, args.port, args.concurrency, args.sample_s)
        return 0
    try:
        chosen = [a.strip() for a in args.actions.split(",") if a.strip()]
        unknown = sorted(set(chosen) - set(ACTIONS))
        if unknown or not chosen:
            parser.error(f"unknown actions {unknown}; choose among {', '.join(ACTIONS)}")
        result = soak(args.clients, args.minutes, args.model, args.warmup, args.sample_s, args.concurrency,
                      {a: ACTIONS[a] for a in chosen})
    except Exception:
        traceback.print_exc()
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        rss = result["rss_mb"]
        print(f"{result['clients']} clients, {result['minutes']} min, {result['model']} model: "
              f"{result['operations_total']} operations {result['operations']}")
        print(f"errors {result['errors']}, cross-session leaks {result['cross_session_leaks']}")
        print(f"server RSS MB: start {rss['start']}, after warm-up {rss['after_warmup']}, max after "
              f"{rss['max_after_warmup']}, end {rss['end']} (growth {result['rss_growth_after_warmup']:.1%}, "
              f"plateau within 10%: {result['plateau_within_10pct']})")
        for message in result["error_messages"] + result["leak_messages"]:
            print("  ", message)
    return 0 if result["errors"] == 0 and result["cross_session_leaks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
