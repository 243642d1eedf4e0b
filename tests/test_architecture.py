"""The library's import picture (issue 28): one package per concept, and every import runs one way.

Every module under longmem_core/ is parsed with ``ast``; every import counts, at the top of a module or inside a
function (an import inside a function is still a dependency, only a later one). A module belongs to its package
(longmem_core/<package>/...); the modules at the top of longmem_core/ belong to ``base`` except the command
(``cli``) and the public names of ``__init__.py`` (``api``). Nothing is imported, so the test is fast.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "longmem_core"

# Lowest first: a module may import its own unit and the units before it, never one after it.
LAYERS = [
    ("base", "top-level modules: typed config and its rules, command-line options, input limits, paths, precision, "
             "shape letters"),
    ("memory", "the memory bank: chunk store, its search index, bank files on disk"),
    ("documents", "files into text: plain text and PDF, page layout, JSON-lines records, how a document fits a bank"),
    ("model", "the LongMem model: frozen backbone, SideNet, attention, caches, generation, checkpoints, its search"),
    ("answer", "answer modes: read-back, best sentences, copied spans and quotes, the copy path, conversations"),
    ("classify", "few-shot classification with demonstrations in memory, its modes and the choice between them"),
    ("api", "longmem_core/__init__.py: the public runtime names (from longmem_core import LongMemModel, ...)"),
    ("training", "training the SideNet: one loop, its schedule, objectives, cached features, synthetic facts"),
    ("evals", "evaluations: perplexity, pass key, ChapterBreak, needles, facts in other words, questions, BM25"),
    ("bench", "the benchmark: timings of the runtime"),
    ("cli", "cli/ and __main__.py: the longmem command over all of the above"),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
RUNTIME = {"base", "memory", "documents", "model", "answer", "classify", "api"}  # what the app may use
LAB = {"training", "evals", "bench"}
TOP_LEVEL = {"__init__": "api", "cli": "cli", "__main__": "cli"}  # other top-level modules: base


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(LIBRARY.rglob("*.py"))}


def unit_of(module: str) -> str:
    """The layer a library module belongs to."""
    parts = module.split(".")
    if module == "longmem_core":
        return "api"
    if len(parts) == 2 and (LIBRARY / f"{parts[1]}.py").is_file():
        return TOP_LEVEL.get(parts[1], "base")
    return parts[1]


def imported(path: Path) -> list[tuple[str, int]]:
    """The library modules ``path`` imports (``longmem_core`` itself: the public names), with line numbers."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "longmem_core"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "longmem_core":
                continue
            for alias in node.names:  # ``from . import search`` imports a module, ``from .model import X`` a name
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno))
    return found


def edges() -> list[tuple[str, str, str]]:
    """(importing module, imported module, where) for every import inside the library."""
    return [(name, target, f"{path.relative_to(ROOT)}:{line}")
            for name, path in MODULES.items() for target, line in imported(path)]


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in MODULES if unit_of(m) not in RANK)
    assert not unknown, f"modules in no layer of LAYERS (add the package there): {unknown}"


def test_imports_run_downward():
    upward = [f"{where}: {a} ({unit_of(a)}) imports {b} ({unit_of(b)})"
              for a, b, where in edges() if RANK[unit_of(b)] > RANK[unit_of(a)]]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_runtime_never_imports_the_lab():
    lab = [f"{where}: {a} imports {b}" for a, b, where in edges()
           if unit_of(a) in RUNTIME and unit_of(b) in LAB]
    assert not lab, "the runtime imports training, evaluations or the bench:\n" + "\n".join(lab)


def test_no_cycles_between_packages():
    graph = defaultdict(set)
    for a, b, _ in edges():
        if unit_of(a) != unit_of(b):
            graph[unit_of(a)].add(unit_of(b))
    done, path = set(), []

    def visit(unit: str) -> None:
        assert unit not in path, f"a cycle between packages: {' -> '.join(path[path.index(unit):] + [unit])}"
        if unit in done:
            return
        path.append(unit)
        for other in sorted(graph[unit]):
            visit(other)
        path.pop()
        done.add(unit)

    for unit in sorted(graph):
        visit(unit)


def test_the_app_uses_the_runtime_only():
    """The app (app.py, app/) imports the library's runtime: never training, evaluations or the bench."""
    used = []
    for path in [ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py"))]:
        for target, line in imported(path):
            assert target in MODULES, f"{path.relative_to(ROOT)}:{line}: no module {target}"
            used.append((unit_of(target), f"{path.relative_to(ROOT)}:{line}: {target}"))
    assert used, "the app imports nothing from longmem_core? (the parse is wrong)"
    outside = [where for unit, where in used if unit not in RUNTIME]
    assert not outside, "the app imports outside the runtime:\n" + "\n".join(outside)


def test_the_parse_sees_known_imports():
    """The test's own parse finds imports inside functions and of modules (``from . import x``)."""
    found = {(a, b) for a, b, _ in edges()}
    assert ("longmem_core.cli.eval_commands", "longmem_core.bench.bench") in found  # inside a function
    assert ("longmem_core.answer.answer", "longmem_core.answer.neural_cache") in found  # from . import neural_cache
    assert ("longmem_core", "longmem_core.model.model") in found


def test_neither_library_nor_app_imports_the_lab_or_the_scripts():
    """experiments/ (probes, results files, notes) and scripts/ sit above everything: nothing shipped imports them,
    nor reaches them through sys.path."""
    shipped = [*sorted(LIBRARY.rglob("*.py")), ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py"))]
    found = []
    for path in shipped:
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                      if n.split(".")[0] in ("experiments", "scripts")]
        if "sys.path" in text and ("experiments" in text or "scripts" in text):
            found.append(f"{path.relative_to(ROOT)}: changes sys.path")
    assert not found, "\n".join(found)


def first_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` (a list of nodes, the first repeated at the end), or [] when it has none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        path.append(node)
        for other in sorted(graph.get(node, ())):
            found = visit(other)
            if found:
                return found
        path.pop()
        done.add(node)
        return []

    for node in sorted(graph):
        found = visit(node)
        if found:
            return found
    return []


def test_first_cycle_finds_one():
    assert first_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert first_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def typing_only(path: Path) -> set[int]:
    """Line numbers of the imports under ``if TYPE_CHECKING:`` in ``path``: names for annotations, never run."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            lines |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def test_no_cycles_between_library_modules():
    """Also inside a package. An import inside a function counts (it runs, only later); an import under
    ``if TYPE_CHECKING:`` does not (it only names a type for an annotation: e.g. generation.py's functions take the
    LongMemModel whose methods call them)."""
    graph: dict[str, set[str]] = defaultdict(set)
    skipped = {name: typing_only(path) for name, path in MODULES.items()}
    for a, b, where in edges():
        if int(where.rsplit(":", 1)[1]) in skipped[a]:
            continue
        if a != b and not (b == "longmem_core" or a.startswith(b + ".")):  # a package's own __init__ is not a cycle
            graph[a].add(b)
    assert not first_cycle(graph), "a cycle of imports: " + " -> ".join(first_cycle(graph))


def app_graph() -> dict[str, set[str]]:
    """The app's modules (app.py, app/...) and which of them each imports."""
    paths = [ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py"))]
    names = {module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in names and m != name}
    return graph


def test_no_cycles_between_app_modules():
    graph = app_graph()
    assert "app.components.page" in graph and graph["app.ui"], "the parse finds the app's modules and imports"
    assert not first_cycle(graph), "a cycle of imports in the app: " + " -> ".join(first_cycle(graph))


def test_the_design_notes_list_every_package_in_order():
    """docs/DESIGN.md section 4 shows a newcomer the packages in the order the layers have them."""
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8").split("## 4.", 1)[1]
    packages = [name for name, _ in LAYERS if (LIBRARY / name).is_dir()]
    places = [text.find(f"`{name}/`") for name in packages]
    assert -1 not in places, [p for p, at in zip(packages, places) if at == -1]
    assert places == sorted(places), "DESIGN.md lists the packages in another order than LAYERS"
