"""Command line: python -m longmem_core {memorize, ask, retrieve, train, eval-*, bench, ...} ... (--json for scripted use).

The parser and ``main`` are here; each command module (``command_modules``) adds its subcommands with
``register(sub)`` (see ``options.py``), each subcommand setting ``run``: parsed args -> a JSON-able dict. The
modules: ``memory_commands.py`` (memorize, ask, retrieve), ``eval_commands.py`` (eval-*, bench),
``training/commands.py`` (train-*); ``common.py`` holds what they share (loading the model and a bank, progress bars)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..documents.data import DocumentError
from ..limits import InputError
from ..memory.memory_bank import BankMismatchError
from ..options import CliError, Parser


def command_modules() -> list:
    """The modules whose ``register(sub)`` adds subcommands, in the order of the help: memorize, ask, retrieve;
    eval-*, bench; training. A new command module adds itself here."""
    from ..training import commands as training
    from . import eval_commands, memory_commands
    return [memory_commands, eval_commands, training]


def build_parser() -> argparse.ArgumentParser:
    prog = "longmem" if Path(sys.argv[0]).name == "longmem" else "python -m longmem_core"  # pyproject's command
    parser = Parser(prog=prog, description="LongMem: read documents into a memory bank, then ask and retrieve.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    as_json = getattr(args, "json", False) or getattr(args, "always_json", False)
    if as_json:  # keep stdout a single JSON object: library chatter goes to stderr
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        result = args.run(args)
    except (CliError, InputError) as exc:  # InputError: over a limit of limits.py, the app's message too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DocumentError, BankMismatchError, FileNotFoundError) as exc:  # bad input met deeper down
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    return 0
