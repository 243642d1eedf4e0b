"""The results page is generated from experiments/results/ and cannot drift: the committed pages are what the files give,
the results page stays short (one row per claim, every claim's page one click away, its links resolving), every
figure keeps its command, targets met or not follow the figures, and a results file no code knows still appears
(its rows as a table)."""
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import results_page  # noqa: E402


def everything(results, tmp_path) -> str:
    """Every page the results give, as one text."""
    return "\n".join(results_page.build(results, tmp_path / "RESULTS.md").values())


def summary_rows(page: str) -> list[str]:
    """The rows of the results page's claims table."""
    start = page.index("| claim (its page")
    return [line for line in page[start:].splitlines()[2:] if line.startswith("| ")]


def test_the_committed_page_is_up_to_date():
    run = subprocess.run([sys.executable, "scripts/results_page.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + "\n(run: python scripts/results_page.py, then commit docs/RESULTS.md)"


def test_every_hand_kept_figure_has_a_command_and_a_date():
    claims = tomllib.loads((ROOT / "experiments" / "results" / "claims.toml").read_text(encoding="utf-8"))
    for claim in claims["claims"]:
        for row in claim.get("rows", []):
            if row["figure"] == "not run":
                continue
            command = row.get("command", claim.get("command", ""))
            assert results_page.named_command(command, claims.get("commands", {})).strip(), (claim["id"], row["metric"])
            assert row.get("date", claim.get("date")) or claim.get("source"), (claim["id"], row["metric"])


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(ROOT / "experiments" / "results" / "bench.json", folder / "bench.json")
    (folder / "claims.toml").write_text('[[claims]]\nid = "memorize"\ntitle = "Memorize speed"\nsource = "bench.json"\n')
    return folder


def test_check_fails_once_a_results_file_changes(results, tmp_path):
    page = tmp_path / "RESULTS.md"
    assert results_page.main(["--results", str(results), "--page", str(page)]) == 0
    assert results_page.main(["--check", "--results", str(results), "--page", str(page)]) == 0
    bench = json.loads((results / "bench.json").read_text())
    bench["memorize_tokens_per_s"] += 1
    (results / "bench.json").write_text(json.dumps(bench))
    assert results_page.main(["--check", "--results", str(results), "--page", str(page)]) == 1


def test_target_met_follows_the_bench_figures(results, tmp_path):
    row = lambda text: next(line for line in text.splitlines() if line.startswith("| memorize, "))  # noqa: E731
    bench = json.loads((results / "bench.json").read_text())
    bench["plain_forward_precision"] = bench["memorize_precision"]  # a run whose plain forward is memorizing's format
    bench["memorize_speedup"] = 2.5
    (results / "bench.json").write_text(json.dumps(bench))
    page = everything(results, tmp_path)
    assert "2.500x" in row(page) and "| ≥ 2x | yes |" in row(page)
    bench["memorize_speedup"] = 1.5
    (results / "bench.json").write_text(json.dumps(bench))
    page = everything(results, tmp_path)
    assert "1.500x" in row(page) and "| ≥ 2x | no |" in row(page)
    summary = summary_rows(results_page.render(results, tmp_path / "RESULTS.md"))
    assert len(summary) == 1 and "1.500x" in summary[0] and "| ≥ 2x | no |" in summary[0]  # unmet stays visible


def test_the_memorize_headline_compares_like_with_like(results, tmp_path):
    """The run of 2026-12-03 timed its main plain forward in float32 against bfloat16 memorizing: the headline is
    its same-format ratio, the mixed one is labelled, and the bound (the share of the forward memorizing runs) is
    shown with how close the figure comes to it."""
    bench = json.loads((results / "bench.json").read_text())
    assert "plain_forward_precision" not in bench and bench["memorize_precision"] == "bfloat16"
    page = everything(results, tmp_path)
    lines = page.splitlines()
    headline = next(line for line in lines if line.startswith("| memorize, "))
    assert f"**{bench['memorize_speedup_vs_plain_same_precision']:.3f}x**" in headline and "same bfloat16" in headline
    mixed = next(line for line in lines if line.startswith("| mixed precision, **not like with like**"))
    assert f"{bench['memorize_speedup']:.3f}x" in mixed and f"{bench['memorize_speedup']:.3f}x" not in headline
    bound = next(line for line in lines if line.startswith("| the bound: "))
    limit = 1 / bench["memorize_forward_share"]
    assert f"≤ **{limit:.2f}x**" in bound
    assert f"**{bench['memorize_speedup_vs_plain_same_precision'] / limit:.0%}** of it" in bound


def test_an_unknown_results_file_is_shown_as_a_table(results, tmp_path):
    niah = {"title": "Needle in a haystack", "command": "python -m longmem_core eval-niah --json", "date": "2026-12-02",
            "rows": [{"length": 4000, "longmem": 0.5, "local": 0.25}, {"length": 16000, "longmem": 0.75}],
            "settings": {"trials": 4, "depths": [0.1, 0.5]},
            "claims": [{"title": "NIAH accuracy", "rows": [{"metric": "acc at 16k", "figure": "0.75", "baseline": "0.25",
                                                             "target": "≥ 0.9", "met": "no"}]}]}
    (results / "niah.json").write_text(json.dumps(niah))
    page = everything(results, tmp_path)
    section = page[page.index("# Needle in a haystack"):]
    assert "python -m longmem_core eval-niah --json" in section and "2026-12-02" in section
    assert "| length | longmem | local |" in section
    assert "| 4,000 | 0.5 | 0.25 |" in section and "| 16,000 | 0.75 |  |" in section
    assert "| settings.trials | 4 |" in section and "| settings.depths | 0.1, 0.5 |" in section
    assert "## NIAH accuracy" in section
    assert "| acc at 16k | 0.75 | 0.25 | ≥ 0.9 | no | `python -m longmem_core eval-niah --json` |" in section
    assert "`niah.json`" in page  # listed among the results files
    summary = summary_rows(results_page.render(results, tmp_path / "RESULTS.md"))
    niah_row = next(row for row in summary if "(results/niah.md)" in row)  # a claim of its own: a row
    assert "| acc at 16k | 0.75 | 0.25 | ≥ 0.9 | no | 2026-12-02 |" in niah_row


def test_a_claim_shows_its_files_and_its_headline_row(results, tmp_path):
    niah = {"title": "Needles", "command": "eval-niah", "date": "2026-12-07",
            "claims": [{"rows": [{"metric": "mode a, 16k", "figure": "50%", "target": "≥ 90%", "met": "no"},
                                 {"metric": "mode b (default), 16k", "figure": "98%", "target": "≥ 90%", "met": "yes"}]}]}
    (results / "niah.json").write_text(json.dumps(niah))
    toml = (results / "claims.toml").read_text()
    (results / "claims.toml").write_text(toml + '[[claims]]\nid = "needles"\ntitle = "Needles"\nfiles = ["niah.json"]\n'
                                         'headline = "niah.json: mode b"\n')
    pages = results_page.build(results, tmp_path / "RESULTS.md")
    row = next(r for r in summary_rows(pages[tmp_path / "RESULTS.md"]) if "(results/needles.md)" in r)
    assert "| mode b (default), 16k | 98% |" in row and "| yes (other rows: 0 met, 1 missed) |" in row
    assert "| mode a, 16k | 50% |" in pages[results / "needles.md"]
    assert results / "niah.md" not in pages  # shown on the claim's page, not on one of its own
    (results / "claims.toml").write_text(toml + '[[claims]]\nid = "needles"\ntitle = "Needles"\nfiles = ["niah.json"]\n'
                                         'headline = "niah.json: mode c"\n')
    with pytest.raises(SystemExit, match="no row matches its headline"):
        results_page.build(results, tmp_path / "RESULTS.md")


def test_the_page_is_short_with_a_row_per_claim_and_links_that_resolve():
    page_path = ROOT / "docs" / "RESULTS.md"
    page = page_path.read_text(encoding="utf-8")
    assert len(page.encode("utf-8")) <= 20_000, "docs/RESULTS.md is for reading in five minutes: keep it under 20 KB"
    claims = tomllib.loads((ROOT / "experiments" / "results" / "claims.toml").read_text(encoding="utf-8"))["claims"]
    shown = {name for c in claims for name in c.get("files", [])} | {c.get("source") for c in claims}
    with_claims = [p.stem for p in sorted((ROOT / "experiments" / "results").glob("*.json")) if p.name not in shown
                   and isinstance(data := json.loads(p.read_text(encoding="utf-8")), dict) and data.get("claims")]
    rows = summary_rows(page)
    for claim_id in [c["id"] for c in claims] + with_claims:
        assert sum(f"(results/{claim_id}.md)" in row for row in rows) == 1, claim_id
    assert len(rows) == len(claims) + len(with_claims)
    for path in [page_path] + sorted((ROOT / "docs" / "results").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            assert linked.exists(), (path.name, target)
            if anchor:
                assert anchor in results_page.anchors(linked.read_text(encoding="utf-8")), (path.name, target)


def test_the_docs_link_the_results_pages_and_their_headings():
    """The dated notes cite the results page or a claim's page; every link into them, from the notes, the README
    and the docs, names a file and a heading that exist."""
    notes = sorted((ROOT / "experiments" / "notes").glob("20*.md"))
    assert notes
    for note in notes:
        text = note.read_text(encoding="utf-8")
        assert "](../../docs/RESULTS.md" in text or "](../../docs/results/" in text, note.name
    docs = [ROOT / "README.md", ROOT / "experiments" / "results" / "README.md"] + sorted((ROOT / "docs").glob("*.md")) + notes
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]*(?:RESULTS\.md|results/[\w-]+\.md)[^)\s]*)\)", text):
            file, _, anchor = target.partition("#")
            linked = (doc.parent / file).resolve()
            assert linked.exists(), (doc.name, target)
            if anchor:
                assert anchor in results_page.anchors(linked.read_text(encoding="utf-8")), (doc.name, target)


def test_odd_results_files_still_render(results, tmp_path):
    (results / "a_list.json").write_text(json.dumps([{"q": "who?", "ok": True}, {"q": "where?", "ok": False}]))
    (results / "nested.json").write_text(json.dumps({"command": "x", "runs": [{"seed": 1, "acc": [0.5, 0.25]}],
                                                      "claims": [{"rows": [{"metric": "m"}]}]}))
    page = everything(results, tmp_path)
    assert "# a list" in page and "| who? | True |" in page
    assert "| runs[0].seed | 1 |" in page and "| runs[0].acc | 0.5, 0.25 |" in page
    assert "| m | ? | — | — | — | `x` |" in page  # a row without a figure says so instead of failing
    summary = results_page.render(results, tmp_path / "RESULTS.md")
    assert "[a list](results/a_list.md)" in summary  # no claim: linked below the table, not a row


def test_a_page_no_longer_given_is_removed_and_makes_the_check_fail(results, tmp_path):
    page = tmp_path / "RESULTS.md"
    (results / "soak.json").write_text(json.dumps({"title": "soak", "claims": [{"rows": [{"metric": "errors"}]}]}))
    assert results_page.main(["--results", str(results), "--page", str(page)]) == 0
    assert (results / "soak.md").exists()
    (results / "soak.json").unlink()
    assert results_page.main(["--check", "--results", str(results), "--page", str(page)]) == 1
    assert results_page.main(["--results", str(results), "--page", str(page)]) == 0
    assert not (results / "soak.md").exists()
    assert results_page.main(["--check", "--results", str(results), "--page", str(page)]) == 0
