"""The shape alphabet (shapes.py) is the one every following module's shape comments use."""
import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from longmem_core.shapes import AXES

LIBRARY = Path(__file__).resolve().parents[1] / "longmem_core"
TENSOR_MODULES = tuple(f"model/{m}" for m in ("attention", "backbone", "generation", "kv_cache", "model", "scoring",
                                               "side_network"))


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


FOLLOWING = sorted(p.relative_to(LIBRARY).with_suffix("").as_posix() for p in LIBRARY.rglob("*.py")
                   if "shapes.py" in _docstring(p))  # those that say so
SHAPE = re.compile(r"\[([A-Za-z0-9_*/+\- ]+(?:, [A-Za-z0-9_*/+\- ]+)+|[A-Z])\]")  # [B, T, V], [H]
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shape_letters(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every capitalised name inside a bracketed shape in the comments and strings of a module."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.STRING):
            continue
        for match in SHAPE.finditer(tok.string):
            found += [(tok.start[0], n) for n in NAME.findall(match.group(1)) if n[0].isupper()]
    return found


def test_every_axis_has_one_letter():
    assert all(len(letter) == 1 for letter in AXES) and len(set(AXES.values())) == len(AXES)


def test_the_tensor_modules_follow_it():
    assert set(TENSOR_MODULES) <= set(FOLLOWING)


@pytest.mark.parametrize("module", FOLLOWING)
def test_module_shapes_use_only_the_alphabet(module):
    path = LIBRARY / f"{module}.py"
    unknown = [(line, name) for line, name in _shape_letters(path) if name not in AXES]
    assert not unknown, f"{module}.py uses shape names outside shapes.AXES: {unknown}"


def test_the_check_sees_a_stray_letter(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('x = 1  # [B, T, C] C is not an axis\n"""keys [N, H, Kx, D]"""\n')
    assert [name for _, name in _shape_letters(bad) if name not in AXES] == ["C", "Kx"]
