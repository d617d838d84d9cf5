"""The ``infoenh`` command (also ``python -m infoenh``).

Each feature module exposes ``add_parser(subparsers)``, which registers one sub-command and sets
``func`` (``args -> exit code``) as its default. To add a command, add its module to
:data:`COMMAND_MODULES`, one line each, e.g. ``"infoenh.train_cli",``.
"""
from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import warnings
from typing import List, Optional, Sequence

from . import __version__

COMMAND_MODULES: List[str] = [
    "infoenh.data.cli",       # infoenh data synth | check | download
    "infoenh.train.cli",      # infoenh train | ablate
    "infoenh.train.grid_cli",  # infoenh grid
    "infoenh.teaching.cli",   # infoenh teach student
]

# Errors a command may raise on bad input or a bad run: printed as one clear message, exit code 1.
_USER_ERRORS = (OSError, ValueError, KeyError, ImportError, RuntimeError, pickle.UnpicklingError, ArithmeticError,
                TypeError)


def build_parser(modules: Sequence[str] = tuple(COMMAND_MODULES)) -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per module in ``modules``."""
    parser = argparse.ArgumentParser(
        prog="infoenh", description="InfoEnh for multimodal sentiment analysis: data tools, training, ablations.")
    parser.add_argument("--version", action="version", version=f"infoenh {__version__}")
    parser.add_argument("--debug", "--traceback", dest="debug", action="store_true",
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, MemoryError):
        return "out of memory" + (f" ({exc})" if str(exc) else "") + "; use smaller sizes or a machine with more memory"
    return str(exc) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings on the command line as one line each, without source paths or code."""
    print(f"infoenh: {category.__name__}: {_one_line(message)}", file=file or sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command and return its exit code.

    A user error (bad input, bad option, a diverged run, a locked folder) ends in one line on
    stderr and exit code 1; any other exception is reported in one line as an internal error; Ctrl-C
    says how to resume and exits 130. ``--debug`` shows the traceback instead.
    """
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.debug:
        warnings.showwarning = _show_warning
    name = args.command
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = getattr(args, "resume_hint", None) or "nothing was lost that a re-run cannot redo"
        print(f"\ninfoenh {name}: interrupted; {hint}", file=sys.stderr)
        return 130
    except (*_USER_ERRORS, MemoryError) as exc:
        if args.debug:
            raise
        print(f"infoenh {name}: error: {_one_line(_message(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, with how to see and report it
        if args.debug:
            raise
        print(f"infoenh {name}: internal error ({type(exc).__name__}: {exc}); re-run with --debug for the "
              "traceback and report it", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
