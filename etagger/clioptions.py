"""Command-line options declared once, as fields of the typed dataclasses the pipelines take.

A field made with ``option(...)`` is a command-line option: click builds it from the
field's name, type and default (``click_options``), and ``build`` turns what click parsed
into the dataclass. A field whose type is a dataclass contributes that dataclass's options.
``parse`` does the same for an argv, for callers in Python and ``python -m``. Options that
no field declares are left over for Beam.

    bool         --name (default False) or --name/--no-name (default True)
    int, float, str  --name VALUE; ``choices`` makes it a choice
    str | None   --name VALUE, or absent
    tuple[str, ...]  --name VALUE repeated; with ``separator``: one VALUE split on it
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_KEY = "etagger.option"
# Options that no field declares go on to Beam (--runner, --direct_num_workers, ...).
PASS_THROUGH = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": ["-h", "--help"],
}


@dataclasses.dataclass(frozen=True)
class _Spec:
    help: str
    aliases: tuple[str, ...]
    choices: tuple[str, ...] | None
    separator: str | None
    envvar: str | None
    minimum: int | None
    required: bool


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    aliases: Sequence[str] = (),
    choices: Sequence[str] | None = None,
    separator: str | None = None,
    envvar: str | None = None,
    minimum: int | None = None,
    required: bool = False,
) -> Any:
    """A dataclass field that is also a command-line option. ``aliases``: more flags for it;
    ``minimum``: the least int accepted; ``required`` (or no default): the command line must
    give it, although Python callers may leave the default."""
    required = required or default is dataclasses.MISSING
    spec = _Spec(
        help,
        tuple(aliases),
        tuple(choices) if choices else None,
        separator,
        envvar,
        minimum,
        required,
    )
    return dataclasses.field(default=default, metadata={_KEY: spec})


def _fields(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of a dataclass."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        yield field, hints[field.name]


def _click_option(field: dataclasses.Field, kind: Any) -> Callable[[F], F]:
    spec: _Spec = field.metadata[_KEY]
    flag = "--" + field.name.replace("_", "-")
    settings: dict[str, Any] = {
        "help": spec.help,
        "envvar": spec.envvar,
        "show_envvar": spec.envvar is not None,
    }
    if spec.required:  # and no default: click 8.5 takes any default, None too, as given
        settings["required"] = True
    else:
        settings.update(default=field.default, show_default=field.default not in (None, ()))
    if kind is bool:
        flags = f"{flag}/--no-{flag[2:]}" if field.default else flag
        return click.option(flags, *spec.aliases, field.name, is_flag=True, **settings)
    if typing.get_origin(kind) is tuple and spec.separator:
        if "default" in settings:
            settings["default"] = spec.separator.join(typing.cast(Sequence[str], field.default))
        return click.option(
            flag, *spec.aliases, field.name, metavar=f"A{spec.separator}B...", **settings
        )
    if typing.get_origin(kind) is tuple:
        return click.option(flag, *spec.aliases, field.name, multiple=True, **settings)
    value_type: Any = click.Choice(spec.choices) if spec.choices else str
    if kind is int:
        value_type = click.IntRange(min=spec.minimum) if spec.minimum is not None else int
    if kind is float:
        value_type = float
    return click.option(flag, *spec.aliases, field.name, type=value_type, **settings)


def _is_dataclass_type(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _options(cls: type) -> Iterator[Callable[[F], F]]:
    for field, kind in _fields(cls):
        if _is_dataclass_type(kind):
            yield from _options(kind)
        elif _KEY in field.metadata:
            yield _click_option(field, kind)


def click_options(*classes: type) -> Callable[[F], F]:
    """A decorator that adds the options of ``classes`` to a click command, in field order."""
    decorators = [d for cls in classes for d in _options(cls)]

    def decorate(command: F) -> F:
        # click lists the options in the order they are applied, the last applied first.
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return decorate


def build(cls: type[T], values: dict[str, Any]) -> T:
    """A ``cls`` from click's parsed ``values``; fields that are not options keep their defaults."""
    kwargs: dict[str, Any] = {}
    for field, kind in _fields(cls):
        if _is_dataclass_type(kind):
            kwargs[field.name] = build(kind, values)
        elif _KEY in field.metadata and field.name in values:
            value = values[field.name]
            spec: _Spec = field.metadata[_KEY]
            if spec.separator and isinstance(value, str):
                value = tuple(part for part in value.split(spec.separator) if part)
            kwargs[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def parse(
    argv: Sequence[str], *classes: type, prog: str = "etagger"
) -> tuple[list[Any], list[str]]:
    """``argv`` parsed as the options of ``classes``: one instance of each, and the options
    left over for Beam. A bad option value raises click's UsageError."""

    @click.command(prog, context_settings=PASS_THROUGH)
    @click_options(*classes)
    @click.pass_context
    def command(ctx: click.Context, **values: Any):
        return [build(cls, values) for cls in classes], list(ctx.args)

    return command.main(list(argv), prog_name=prog, standalone_mode=False)
