"""``infoenh teach student NOTEBOOK... --out DIR``: write the student versions of chapters;
``infoenh teach colab [--sync | --check]``: regenerate the Colab edition (see :mod:`.colab`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def _student(args: argparse.Namespace) -> int:
    from .student import write_student_versions

    missing = [p for p in args.notebooks if not Path(p).exists()]
    if missing:
        raise OSError(f"no such notebook: {', '.join(map(str, missing))}")
    for path in write_student_versions(args.notebooks, args.out):
        print(f"wrote {path}")
    return 0


def _colab(args: argparse.Namespace) -> int:
    from .colab import run

    return run(args)


def add_parser(subparsers) -> None:
    teach = subparsers.add_parser("teach", help="classroom tools: student versions and the Colab edition")
    sub = teach.add_subparsers(dest="teach_command", metavar="ACTION", required=True)
    p = sub.add_parser("student", help="write notebooks with solutions removed and checks kept")
    p.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb)")
    p.add_argument("--out", type=Path, required=True, help="folder for the student versions")
    p.set_defaults(func=_student)
    from .colab import add_arguments

    c = sub.add_parser("colab", help="regenerate the Colab edition (.ipynb) of every chapter from its .md")
    add_arguments(c)
    c.set_defaults(func=_colab)
