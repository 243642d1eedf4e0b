"""pyproject.toml gives the library and the `longmem` command: the entry point names a real callable, the
dependencies are requirements.txt's (pinned once), every package folder is listed, and the assets the library
reads are shipped. (Fast, no network: `pip install .` itself was tried by hand, see pyproject.toml.)"""
import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_longmem_command_is_the_cli_main():
    target = PYPROJECT["project"]["scripts"]["longmem"]
    module, name = target.split(":")
    main = getattr(importlib.import_module(module), name)
    assert callable(main)
    assert main is importlib.import_module("longmem_core.cli").main  # what python -m longmem_core runs


def test_dependencies_are_read_from_requirements_txt_only():
    project = PYPROJECT["project"]
    assert "dependencies" not in project and "dependencies" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)


def test_every_package_folder_is_listed_and_the_assets_it_reads_exist():
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "longmem_core").rglob("__init__.py")}
    listed = set(setuptools["packages"])
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"
    assert listed - found == {"longmem_core._assets"}
    folder = ROOT / setuptools["package-dir"]["longmem_core._assets"]
    shipped = setuptools["package-data"]["longmem_core._assets"]
    assert all((folder / name).is_file() for name in shipped)
    from longmem_core import config, paths
    assert paths.ASSETS == ROOT / "assets"  # in the checkout; installed, longmem_core/_assets
    assert {config.SHIPPED_CHECKPOINT.name, paths.DEFAULT_BOOK.name} <= set(shipped)
