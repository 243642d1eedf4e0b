"""Build docs/RESULTS.md, the results page, from the files in docs/results/.

    python scripts/results_page.py           # rewrite docs/RESULTS.md
    python scripts/results_page.py --check   # exit 1 when docs/RESULTS.md differs from what the files give

The sources (docs/results/README.md lists their keys):
- ``claims.toml``, kept by hand: the machines, the claims in page order with their titles and notes, and the rows
  of figures whose run wrote no JSON file, each with its command and date;
- ``bench.json``, written by ``python -m longmem_core bench``: the rows of the speed and scale claims are computed
  from it here (``BENCH_ROWS``), so a new bench run changes the page, targets met or not included;
- any other ``*.json``: shown as it stands (its ``claims`` as claim tables, its ``rows`` as a table, its other
  figures as a list), so an evaluation that drops a results file here appears without new code.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_bench import BENCH_ROWS, Row  # noqa: E402  (the sibling module, also when run as a script)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
PAGE = ROOT / "docs" / "RESULTS.md"
META_KEYS = {"title", "summary", "note", "notes", "command", "date", "machine", "rows", "claims"}
INLINE_COMMAND = 100  # longer, multi-line or repeated commands are listed under their table, named by a letter
MAX_FIGURES = 60  # figures listed per generic file; the rest stay in the file
MAX_ROWS = 100  # rows of a generic file's table, likewise


@dataclass
class Claim:
    """One table of the page: a claim, its rows, and where they came from."""
    title: str
    rows: list[Row]
    note: str = ""
    machine: str = ""  # the name of the machine it ran on, as the machines table lists it
    source: str = ""  # the results file the rows came from, if any
    extra: list[str] = field(default_factory=list)  # markdown blocks shown after the table


# -- small formatting helpers --

def cell(text: object) -> str:
    """One markdown table cell: no newline, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def number(value: object) -> str:
    """A figure as the page prints it: thousands separated, about four significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"


def slug(title: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- machines --

def machine_key(m: dict) -> tuple:
    return (str(m.get("cpu", "")).split(" (")[0], m.get("cores"), m.get("torch"))


def machines_table(known: dict[str, dict], results: dict[str, dict]) -> tuple[str, dict[str, str]]:
    """The machines section, and the machine name each results file ran on. A file's ``machine`` that matches a
    hand-kept one (same CPU model, cores and torch) is that machine; any other gets its own line."""
    rows = [dict(m) for m in known.values()]
    for m in rows:
        m["used"] = []
    named: dict[str, str] = {}
    for name, data in results.items():
        m = data.get("machine") if isinstance(data, dict) else None
        if not isinstance(m, dict):
            continue
        match = next((r for r in rows if machine_key(r) == machine_key(m)), None)
        if match is None:
            match = {**m, "name": f"the machine of {name}", "used": []}
            rows.append(match)
        match["used"].append(f"`{name}`")
        named[name] = match["name"]
    header = ["machine", "CPU", "cores", "RAM", "torch", "GPU", "figures from it"]
    body = [[m["name"], m.get("cpu", "?"), m.get("cores", "?"),
             f"{m['ram_gib']} GiB" if m.get("ram_gib") else "not recorded", m.get("torch", "?"),
             m.get("gpu") or m.get("cuda") or "none",
             ", ".join([m.get("used_for", "")] + m["used"]).strip(", ")] for m in rows]
    return table(header, body), named


# -- claims --

def claim_table(claim: Claim) -> str:
    """The claim's heading, note, table and the commands too long for a cell."""
    letters: dict[str, str] = {}
    body = []
    uses = [r.command.strip() for r in claim.rows]
    for r in claim.rows:
        command = r.command.strip()
        if not command:
            shown = "—"
        elif "\n" in command or len(command) > INLINE_COMMAND or uses.count(command) > 1:
            shown = "see " + letters.setdefault(command, chr(ord("A") + len(letters)))
        else:
            shown = f"`{command}`"
        body.append([r.metric, r.figure, r.baseline, r.target, r.met, shown])
    dates = sorted({r.date for r in claim.rows if r.date})
    where = [f"Measured {', '.join(dates)}" if dates else "Date not recorded"]
    if claim.machine:
        where.append(f"on {claim.machine}")
    if claim.source:
        where.append(f"figures from `docs/results/{claim.source}`")
    parts = [f"## {claim.title}", claim.note.strip(), " · ".join(where) + ".",
             table(["metric", "our figure", "baseline (same run)", "target", "met", "command"], body)]
    for command, letter in letters.items():
        parts.append(f"{letter}:\n\n```bash\n{command}\n```")
    parts += claim.extra
    return "\n\n".join(p for p in parts if p)


def named_command(command: str, commands: dict[str, str]) -> str:
    """``@name`` is the command of that name in claims.toml's [commands]; anything else is the command itself."""
    if command.startswith("@"):
        if command[1:] not in commands:
            raise SystemExit(f"claims.toml: no command named {command[1:]!r} in [commands]")
        return commands[command[1:]]
    return command


def row_from(entry: dict, defaults: dict, commands: dict[str, str] | None = None) -> Row:
    command = entry.get("command", defaults.get("command", ""))
    return Row(metric=str(entry.get("metric", "?")), figure=str(entry.get("figure", "?")),
               baseline=str(entry.get("baseline", "—")),
               target=str(entry.get("target", "—")), met=str(entry.get("met", "—")),
               command=named_command(command, commands or {}), date=entry.get("date", defaults.get("date", "")))


def hand_claims(claims_file: dict, results: dict[str, dict], machines: dict[str, str], page_dir: Path) -> list[Claim]:
    """The claims of claims.toml in their order; one with ``source = "bench.json"`` gets its rows from that file."""
    names = {k: m["name"] for k, m in claims_file.get("machines", {}).items()}
    out = []
    for c in claims_file.get("claims", []):
        source = c.get("source", "")
        rows: list[Row] = []
        extra: list[str] = []
        defaults = {"command": c.get("command", ""), "date": c.get("date", "")}
        if source:
            data = results.get(source)
            if data is None:
                raise SystemExit(f"claims.toml: claim {c['id']!r} reads docs/results/{source}, which does not exist")
            if c["id"] not in BENCH_ROWS:
                raise SystemExit(f"claims.toml: claim {c['id']!r} names a source, but scripts/results_bench.py has no "
                                 f"rows for it (a results file can instead carry its own claims: see its README)")
            rows, extra = BENCH_ROWS[c["id"]](data, page_dir)
            for r in rows:
                r.command, r.date = r.command or data.get("command", ""), r.date or data.get("date", "")
        rows += [row_from(e, defaults, claims_file.get("commands")) for e in c.get("rows", [])]
        machine = names.get(c.get("machine", ""), "") or machines.get(source, "")
        out.append(Claim(c["title"], rows, c.get("note", ""), machine, source, extra))
    return out


# -- any other results file --

def flat_figures(data: object, prefix: str = "") -> list[tuple[str, str]]:
    """(name, value) pairs of a JSON value's scalars, nested keys joined by dots, lists of scalars joined."""
    if isinstance(data, dict):
        return [pair for k, v in data.items() for pair in flat_figures(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list) and all(not isinstance(v, (dict, list)) for v in data):
        return [(prefix, ", ".join(number(v) for v in data))]
    if isinstance(data, list):
        return [pair for i, v in enumerate(data) for pair in flat_figures(v, f"{prefix}[{i}]")]
    return [(prefix, number(data))]


def records_table(records: list[dict]) -> str:
    """A list of JSON objects as a table: one column per key, in the order keys first appear. Keys holding lists
    of objects (per-trial or per-question details) stay in the file: a note says which."""
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    detail = [k for k in columns if any(isinstance(r.get(k), list) and r[k] and isinstance(r[k][0], dict)
                                        for r in records)]
    columns = [k for k in columns if k not in detail]
    note = f"\n\n(Per-row details in the file: {', '.join(detail)}.)" if detail else ""
    return table(columns, [[number(r.get(k, "")) if not isinstance(r.get(k), (dict, list)) else
                            json.dumps(r.get(k)) for k in columns] for r in records]) + note


def generic_section(name: str, data: dict, machine: str) -> str:
    """A results file no code here knows: its title, note, command, claims, rows and other figures."""
    if not isinstance(data, dict):
        data = {"rows": data} if isinstance(data, list) else {"value": data}
    title = str(data.get("title") or Path(name).stem.replace("_", " "))
    parts = [f"## {title}"]
    for key in ("summary", "note"):
        if data.get(key):
            parts.append(str(data[key]).strip())
    where = [f"Figures from `docs/results/{name}`"]
    if data.get("date"):
        where.append(f"measured {data['date']}")
    if machine:
        where.append(f"on {machine}")
    parts.append(" · ".join(where) + ".")
    if data.get("command"):
        parts.append(f"Command:\n\n```bash\n{str(data['command']).strip()}\n```")
    notes = data.get("notes")
    if notes:
        parts.append("\n".join(f"- {n}" for n in (notes if isinstance(notes, list) else [notes])))
    defaults = {"command": data.get("command", ""), "date": data.get("date", "")}
    for c in data.get("claims") or []:
        rows = [row_from(e, defaults) for e in c.get("rows", [])]
        claim = Claim(c.get("title", title), rows, c.get("note", ""), machine, name)
        parts.append(claim_table(claim).replace("## ", "### ", 1))
    rows = data.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        more = f"\n\n({len(rows) - MAX_ROWS} more rows in the file.)" if len(rows) > MAX_ROWS else ""
        parts.append(records_table(rows[:MAX_ROWS]) + more)
    elif rows:
        parts.append(table(["figure", "value"], flat_figures(rows, "rows")))
    figures = flat_figures({k: v for k, v in data.items() if k not in META_KEYS})
    if figures:
        shown = figures[:MAX_FIGURES]
        more = f"\n\n({len(figures) - MAX_FIGURES} more figures in the file.)" if len(figures) > MAX_FIGURES else ""
        parts.append(table(["figure", "value"], shown) + more)
    return "\n\n".join(parts)


# -- the page --

def files_list(results: dict[str, dict], used: set[str]) -> str:
    """One line per results file: what ran and when; for the files claims read (shown nowhere else as a whole),
    also their notes (how the file came to be, if not plainly)."""
    lines = ["The JSON files in `docs/results/` this page is built from (with `claims.toml`, kept by hand):", ""]
    for name, data in results.items():
        data = data if isinstance(data, dict) else {}
        line = f"- `{name}`: " + (f"`{cell(data['command'])}`" if data.get("command") else "no command recorded")
        line += f", {data['date']}." if data.get("date") else "."
        notes = (data.get("notes") or []) if name in used else []
        line += "".join(f" {n}" for n in (notes if isinstance(notes, list) else [notes]))
        lines.append(line)
    return "\n".join(lines) if results else ""


def load(results_dir: Path) -> tuple[dict, dict[str, dict]]:
    claims_path = results_dir / "claims.toml"
    claims = tomllib.loads(claims_path.read_text(encoding="utf-8")) if claims_path.exists() else {}
    results = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            results[path.name] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"docs/results/{path.name} is not valid JSON: {exc}") from exc
    return claims, results


def render(results_dir: Path = RESULTS, page: Path = PAGE) -> str:
    claims_file, results = load(results_dir)
    machines, named = machines_table(claims_file.get("machines", {}), results)
    claims = hand_claims(claims_file, results, named, page.parent)
    used = {c.source for c in claims if c.source}
    others = {name: data for name, data in results.items() if name not in used}
    glance = []
    for c in claims:
        met = [r for r in c.rows if r.met.lower().startswith("yes")]
        missed = [r for r in c.rows if r.met.lower().startswith("no")]
        glance.append([f"[{c.title}](#{slug(c.title)})", len(met), len(missed)])
    for name, data in others.items():  # results files that carry their own claims count too
        for c in (data.get("claims") or []) if isinstance(data, dict) else []:
            met = [r for r in c.get("rows", []) if str(r.get("met", "")).lower().startswith("yes")]
            missed = [r for r in c.get("rows", []) if str(r.get("met", "")).lower().startswith("no")]
            title = str(data.get("title") or Path(name).stem.replace("_", " "))
            glance.append([f"[{c.get('title', title)}](#{slug(title)}) (`{name}`)", len(met), len(missed)])
    notes = os.path.relpath(ROOT / "docs" / "notes", page.parent)
    head = [
        "# Results",
        "<!-- Generated by `python scripts/results_page.py` from docs/results/: edit claims.toml there, or re-run the "
        "command that writes a results file, then run the script. Do not edit this page by hand. -->",
        claims_file.get("intro", "").strip().replace("{notes}", notes),
        "## Machines", machines,
        "## At a glance", table(["claim", "rows meeting their target", "rows missing it"], glance),
        "## Results files", files_list(results, used),
    ]
    body = [claim_table(c) for c in claims]
    if others:
        body.append("# Other results files\n\nShown as they stand, one section per file in `docs/results/`.")
        body += [generic_section(name, data, named.get(name, "")) for name, data in others.items()]
    return "\n\n".join(p for p in head + body if p).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date; write nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of results files")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page to write or check")
    args = parser.parse_args(argv)
    text = render(args.results, args.page)
    if args.check:
        current = args.page.read_text(encoding="utf-8") if args.page.exists() else ""
        if current != text:
            print(f"{args.page} is out of date with {args.results}: run python scripts/results_page.py",
                  file=sys.stderr)
            return 1
        print(f"{args.page} is up to date")
        return 0
    args.page.write_text(text, encoding="utf-8")
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
