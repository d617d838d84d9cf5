"""``infoenh teach student NOTEBOOK... --out DIR``: write the student versions of chapters."""
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


def add_parser(subparsers) -> None:
    teach = subparsers.add_parser("teach", help="classroom tools: student versions of the chapters")
    sub = teach.add_subparsers(dest="teach_command", metavar="ACTION", required=True)
    p = sub.add_parser("student", help="write notebooks with solutions removed and checks kept")
    p.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb)")
    p.add_argument("--out", type=Path, required=True, help="folder for the student versions")
    p.set_defaults(func=_student)
