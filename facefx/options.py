"""Command-line options written once: in the config dataclasses, as field metadata.

A config field declared with `option(...)` carries its default, help text, flag, choices and numeric bounds. From
that one declaration this module builds the stage script's argparse options (defaults shown in --help), reads a
recipe file (TOML) of settings, merges defaults < base (a resumed run) < recipe < options given on the command
line, and validates every numeric value once: out of range, nan and inf are refused with one line naming the
option, the bad value and the allowed range (FacefxError: exit 2 through facefx.errors.cli_main), before the
stage writes anything.

Torch-free and light (argparse, dataclasses, tomllib): a script can build its --help without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from facefx.errors import FacefxError, epilog

META = "facefx.option"


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line and in recipes, and which values it accepts."""

    help: str
    flag: str | None = None  # default: --field-name (underscores as dashes)
    choices: tuple | None = None
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    negate: bool = False  # a bool defaulting to True, switched off by --no-<name> (or `flag`)
    negatable: bool = False  # a bool with both --x and --no-x
    split: str | None = None  # a sequence given as one comma-separated argument ("16,32,64")
    nargs: str | None = None  # a sequence given as several arguments ("+")
    append: bool = False  # a sequence given by repeating the option (--faces A --faces B)
    metavar: str | None = None
    none: str | None = None  # what a None default means, shown as the default in --help ("all", "torch's own")
    cli: bool = True  # False: a recipe/config setting with no command-line flag
    required: bool = False  # the command line must give it (argparse says so when it is missing)

    def flag_for(self, name: str) -> str:
        if self.flag:
            return self.flag
        return "--no-" + name.replace("_", "-") if self.negate else "--" + name.replace("_", "-")

    def range_text(self, kind: type) -> str:
        """The allowed range in words: 'an integer >= 1', 'a finite number in (0, 1]'."""
        noun = "an integer" if kind is int else "a finite number"
        lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if lo and hi:
            return f"{noun} in {lo}, {hi}"
        if lo:
            return f"{noun} {'>=' if self.ge is not None else '>'} {lo[1:]}"
        if hi:
            return f"{noun} {'<=' if self.le is not None else '<'} {hi[:-1]}"
        return noun


def _num(x: float) -> str:
    """A bound or a value as typed: 0 not 0.0, 0.0002, nan, inf."""
    return str(int(x)) if float(x).is_integer() else repr(x)


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field with its command-line option: `size: int = option(256, "crop side in px", ge=16)`."""
    meta = {META: Option(help=help, **spec)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- types ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    name: str
    opt: Option
    kind: type  # the scalar type: int, float, str, bool, Path
    sequence: type | None  # list or tuple when the field holds several values
    default: Any  # MISSING when the config requires it


def fields_of(cls: type) -> list[_Field]:
    """The fields of a config dataclass that carry an option (in declaration order)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        opt = f.metadata.get(META)
        if opt is None:
            continue
        kind, sequence = _unpack(hints[f.name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        out.append(_Field(f.name, opt, kind, sequence, default))
    return out


def _unpack(tp: Any) -> tuple[type, type | None]:
    """(scalar type, list/tuple or None) of an annotation such as `list[str] | None` or `tuple[int, ...]`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return typing.get_args(tp)[0], origin
    return tp, None


def _scalar(text: str, kind: type) -> Any:
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return Path(text) if kind is Path else text


# ---- argparse -----------------------------------------------------------------------------------------------------
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the script's docstring as written (its example commands); option defaults are in each help text."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error form: one line (no usage block) and exit 2, like every other bad input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", epilog())  # every command's --help ends with the exit codes
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _shown(f: _Field) -> str:
    if f.kind is bool:
        return ""
    if f.default is MISSING:
        return ""
    if f.default is None or f.default == "":
        return f" (default: {f.opt.none})" if f.opt.none else ""
    value = f.default
    if f.sequence is not None:
        value = f.opt.split.join(map(str, value)) if f.opt.split else " ".join(map(str, value))
        if not value:
            return f" (default: {f.opt.none})" if f.opt.none else ""
    return f" (default: {value})"


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (),
                shown: dict[str, str] | None = None) -> None:
    """Add an option for every command-line field of `cls` (in field order), except those in `skip`.

    Defaults are argparse.SUPPRESS: the namespace holds only what was typed, so `resolve` knows which options were
    given (they override a recipe or a resumed run) and fills the rest from the dataclass. `shown` gives the
    default a script shows when it is not the dataclass's (e.g. "per judge: ..."), without changing the config class.
    """
    shown = shown or {}
    for f in fields_of(cls):
        if not f.opt.cli or f.name in skip:
            continue
        flag = f.opt.flag_for(f.name)
        default = f" (default: {shown[f.name]})" if f.name in shown else _shown(f)
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": f.opt.help + default}
        if flag.startswith("-"):  # a positional's name is its dest
            kw["dest"] = f.name
            if f.opt.required:
                kw["required"] = True
        if f.kind is bool:
            if f.opt.negatable:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["action"] = "store_false" if f.opt.negate else "store_true"
        else:
            kw["type"] = str if f.opt.split else f.kind  # int, float, str or Path: argparse names it on a bad literal
            if f.opt.choices:
                kw["choices"] = f.opt.choices
            if f.opt.nargs:
                kw["nargs"] = f.opt.nargs
            if f.opt.append:
                kw["action"] = "append"
            if f.opt.metavar:
                kw["metavar"] = f.opt.metavar
            elif not f.opt.choices and flag.startswith("-"):
                kw["metavar"] = flag.lstrip("-").upper().replace("-", "_")
        parser.add_argument(flag, **kw)


def given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The config values typed on the command line (converted, not yet validated)."""
    out = {}
    for f in fields_of(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            if f.opt.split and isinstance(value, str):
                value = _split(f, value)
            out[f.name] = value
    return out


def _split(f: _Field, text: str) -> Any:
    parts = [p.strip() for p in text.split(f.opt.split) if p.strip()]
    if not parts:
        raise FacefxError(f"{f.opt.flag_for(f.name)} {text!r} names nothing: give one or more "
                          f"{'comma' if f.opt.split == ',' else repr(f.opt.split)}-separated values")
    try:
        values = [_scalar(p, f.kind) for p in parts]
    except ValueError:
        raise FacefxError(f"{f.opt.flag_for(f.name)} {text!r}: each {f.opt.split}-separated value must be "
                          f"{'an integer' if f.kind is int else 'a number'}") from None
    return f.sequence(values) if f.sequence else values


# ---- recipes ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A recipe file: the settings of one stage (a flat TOML table of config field names)."""

    path: Path
    stage: str
    settings: dict[str, Any]
    sha256: str

    def record(self) -> dict:
        """What a manifest keeps of it: where it was, its hash and its content."""
        return {"file": str(self.path), "sha256": self.sha256, "stage": self.stage, "settings": self.settings}


def load_recipe(path: str | Path, cls: type, stage: str) -> Recipe:
    """Read a recipe for `stage`; a missing file, bad TOML, another stage's recipe or an unknown key is one line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FacefxError(f"--recipe {path}: cannot read it ({err.strerror}); pass a file such as "
                          f"recipes/age/{stage}.toml") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise FacefxError(f"--recipe {path} is not valid TOML ({err}); fix the file") from None
    got = data.pop("stage", None)
    if got != stage:
        raise FacefxError(f"--recipe {path} is a {got or 'stage-less'} recipe; this command takes a {stage} recipe "
                          f"(a file with stage = \"{stage}\")")
    names = {f.name: f for f in fields_of(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise FacefxError(f"--recipe {path}: unknown setting(s) {', '.join(unknown)} for a {stage}; "
                          f"known: {', '.join(sorted(names))}")
    for k, v in data.items():  # wrong types are refused here, before anything runs
        _from_toml(names[k], v, f"{k} in {path}")
    return Recipe(path, stage, data, hashlib.sha256(raw).hexdigest())


def _from_toml(f: _Field, value: Any, where: str) -> Any:
    """A TOML value as the field's Python type (paths, tuples), or one line saying what type it should be."""
    def one(v: Any) -> Any:
        ok = (isinstance(v, bool) if f.kind is bool else
              isinstance(v, int) and not isinstance(v, bool) if f.kind is int else
              isinstance(v, (int, float)) and not isinstance(v, bool) if f.kind is float else isinstance(v, str))
        if not ok:
            noun = {bool: "true or false", int: "an integer", float: "a number"}.get(f.kind, "a string")
            raise FacefxError(f"{where}: {v!r} should be {noun}")
        return float(v) if f.kind is float else Path(v) if f.kind is Path else v

    if f.sequence is not None:
        if not isinstance(value, list):
            raise FacefxError(f"{where}: {value!r} should be a list, e.g. [{_shown(f)[11:-1] or '...'}]")
        return f.sequence(one(v) for v in value)
    return one(value)


# ---- resolve + validate -------------------------------------------------------------------------------------------
def resolve(cls: type, args: argparse.Namespace, *, recipe: Recipe | None = None,
            base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config values: dataclass defaults < base (e.g. a resumed run's config) < recipe < options typed; validated.

    Returns keyword arguments for `cls` (fields without a default and not given are left out: the script says
    what is missing).
    """
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for f in fields_of(cls):
        if f.default is not MISSING:
            values[f.name] = f.default
    for name, v in (base or {}).items():
        values[name] = v
    if recipe is not None:
        names = {f.name: f for f in fields_of(cls)}
        for name, v in recipe.settings.items():
            values[name] = _from_toml(names[name], v, f"{name} in {recipe.path}")
            where[name] = f"{name} in {recipe.path}"
    values.update(given(cls, args))
    validate(cls, values, where)
    return values


def validate(cls: type, values: dict[str, Any], where: dict[str, str] | None = None) -> None:
    """Refuse a value out of its field's range, nan or inf, or not among its choices: one line, FacefxError."""
    where = where or {}
    for f in fields_of(cls):
        if f.name not in values:
            continue
        label = where.get(f.name, f.opt.flag_for(f.name) if f.opt.cli else f.name)
        value = values[f.name]
        items = value if (f.sequence is not None and value is not None) else [value]
        for v in items:
            _check(f, v, label)


def _check(f: _Field, v: Any, label: str) -> None:
    if v is None:
        return
    if f.opt.choices and v not in f.opt.choices:
        raise FacefxError(f"{label} {v}: choose one of {', '.join(map(str, f.opt.choices))}")
    if f.kind not in (int, float) or isinstance(v, bool):
        return
    bad = not math.isfinite(v) or (
        (f.opt.ge is not None and v < f.opt.ge) or (f.opt.gt is not None and v <= f.opt.gt)
        or (f.opt.le is not None and v > f.opt.le) or (f.opt.lt is not None and v >= f.opt.lt))
    if bad:
        raise FacefxError(f"{label} {_num(v)} is out of range: it must be {f.opt.range_text(f.kind)}")


def read_recipe(args: argparse.Namespace, cls: type, stage: str) -> Recipe | None:
    """The recipe named by --recipe (None without one); its content is recorded for the manifests this process
    writes (facefx.manifest.record_recipe), as the command line is."""
    from facefx.manifest import record_recipe

    if getattr(args, "recipe", None) is None:
        record_recipe(None)  # an earlier main() in this process (tests) ran from one
        return None
    recipe = load_recipe(args.recipe, cls, stage)
    record_recipe(recipe.record())
    return recipe


def add_recipe_option(parser: argparse.ArgumentParser, stage: str) -> None:
    parser.add_argument("--recipe", type=Path, metavar="FILE",
                        help=f"run from a recipe: a TOML file of {stage} settings (e.g. recipes/age/{stage}.toml); "
                             "options typed here override it; the manifest records its content")


def fill(args: argparse.Namespace, values: dict[str, Any]) -> argparse.Namespace:
    """The namespace with every config value set (for scripts that read options as args.<name>)."""
    for k, v in values.items():
        setattr(args, k, v)
    return args
