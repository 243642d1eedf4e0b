"""Command-line options generated from config dataclasses, and what every subcommand module shares.

A subcommand module exposes ``register(sub)``: it adds its parsers to ``sub`` (argparse subparsers) and sets
``run`` (a function of the parsed args returning a JSON-able dict). ``cli/__init__.py`` lists the modules; a new command
is one more entry there. Options of a config dataclass come from its fields: ``data_files`` -> ``--data-files``,
type and default from the field, help (and e.g. ``choices``, ``positional``) from ``metadata`` (``config.option``).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from .config import DEFAULT_BACKBONE
from .limits import check_number

DEFAULT_CHECKPOINT_ENV = "LONGMEM_CHECKPOINT"


class CliError(Exception):
    """An error to report as one line on stderr, with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with every usage error as one ``error:`` line and exit status 2 (argparse prints the usage first;
    the CLI's own errors are one line, and so are these)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def number(low: float, high: float, *, integer: bool = False) -> typing.Callable[[str], float | int]:
    """An argparse ``type``: a number in [low, high] (a whole one with ``integer``); NaN, infinities and words are
    refused with the option's range (argparse adds the option's name)."""
    def parse(text: str) -> float | int:
        try:
            return check_number(text, "it", low, high, integer=integer)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("it must", "must", 1)) from None
    parse.__name__ = "whole number" if integer else "number"
    return parse


def finite_float(text: str) -> float:
    """An argparse ``type`` for a float option of a config: any finite number (the config checks its range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text[:40]!r}") from None
    if value != value or value in (float("inf"), -float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text[:40]}")
    return value


def _base_type(hint) -> tuple[type, bool, bool]:
    """(element type, is a list, may be None) of a field's type hint."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def add_config_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the dataclass ``cls`` (fields in ``skip`` left out)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        help_text = (meta.pop("help", "") or "").replace("%", "%%")
        positional = meta.pop("positional", False)
        kind, is_list, _ = _base_type(hints[f.name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs: dict = {"help": help_text, **meta}
        if not positional and default is not None and default is not False and default != []:
            kwargs["help"] = f"{help_text} (default: %(default)s)"
        if positional:
            parser.add_argument(f.name, nargs="+", type=kind, **kwargs)
            continue
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            action = "store_true" if default is False else argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=default, **kwargs)
        elif is_list:
            parser.add_argument(flag, nargs="*", type=finite_float if kind is float else kind, default=default, **kwargs)
        else:
            parser.add_argument(flag, type=finite_float if kind is float else kind, default=default, **kwargs)


def config_from_args(cls, args: argparse.Namespace, **overrides):
    """An instance of the dataclass ``cls`` from parsed options (``overrides`` win)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    try:
        return cls(**{**values, **overrides})
    except ValueError as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def add_model_options(parser: argparse.ArgumentParser, checkpoint: bool = True, device: bool = True) -> None:
    """--backbone, --checkpoint, --device: which model a command loads."""
    parser.add_argument("--backbone", default=None,
                        help=f"backbone preset, hub id or local dir (default: the checkpoint's, else {DEFAULT_BACKBONE})")
    if checkpoint:
        parser.add_argument("--checkpoint", default=None,
                            help=f"trained SideNet checkpoint (.safetensors); default: ${DEFAULT_CHECKPOINT_ENV} if set, "
                                 "else assets/sidenet.safetensors if it exists, else the untrained SideNet")
    if device:
        parser.add_argument("--device", default=None,
                            help="cpu (default), cuda, or auto (cuda where there is one); memory banks follow the model")


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options of every model command: the model, and --json."""
    add_model_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def model_flags(args: argparse.Namespace) -> list[str]:
    """The model options of a parsed command line as flags again (for the exact command a result records),
    ``--json`` last when it was given."""
    flags = [f"--{name} {getattr(args, name)}" for name in ("backbone", "checkpoint", "device")
             if getattr(args, name, None)]
    return flags + (["--json"] if getattr(args, "json", False) else [])
