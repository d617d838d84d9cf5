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
from typing import List, Optional, Sequence

from . import __version__

COMMAND_MODULES: List[str] = [
    "infoenh.data.cli",       # infoenh data synth | check | download
    "infoenh.train.cli",      # infoenh train | ablate
    "infoenh.teaching.cli",   # infoenh teach student
]

# Errors a command may raise on bad input: printed as one clear message, exit code 1.
_USER_ERRORS = (OSError, ValueError, KeyError, ImportError, RuntimeError, pickle.UnpicklingError)


def build_parser(modules: Sequence[str] = tuple(COMMAND_MODULES)) -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per module in ``modules``."""
    parser = argparse.ArgumentParser(
        prog="infoenh", description="InfoEnh for multimodal sentiment analysis: data tools, training, ablations.")
    parser.add_argument("--version", action="version", version=f"infoenh {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as exc:
        if args.traceback:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"infoenh {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
