"""``infoenh data ...``: make a SYNTHETIC testbed, check a dataset file, download one.

    infoenh data synth --out PATH [--aligned|--unaligned] [--seed N] [--sizes 64 16 32] [knobs...]
    infoenh data check PATH [--sha256 HEX] [--inf-policy zero|error] [--json]
    infoenh data download URL_OR_DRIVE_ID DEST [--sha256 HEX]

Heavy imports (torch, numpy) happen inside the commands so ``infoenh --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, List, Optional


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` and its sub-commands on the top-level ``subparsers``."""
    p = subparsers.add_parser("data", help="datasets: make a synthetic testbed, check or download a file",
                              description="Dataset tools (MMSA/MulT pickles and the SYNTHETIC testbed).")
    sub = p.add_subparsers(dest="data_command", metavar="{synth,check,download}", required=True)

    s = sub.add_parser("synth", help="write a SYNTHETIC MOSI-shaped testbed pickle",
                       description="Write a SYNTHETIC testbed in MMSA's pickle layout (labelled synthetic; "
                                   "knobs are explained in infoenh.data.synthetic).")
    s.add_argument("--out", required=True, help="output .pkl path")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--aligned", dest="aligned", action="store_true", help="audio/vision 50 steps, aligned to words")
    g.add_argument("--unaligned", dest="aligned", action="store_false", help="audio 375 / vision 500 steps (default)")
    s.set_defaults(aligned=False)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sizes", type=int, nargs=3, metavar=("TRAIN", "VALID", "TEST"),
                   help="split sizes (default MOSI's 1284 229 686)")
    s.add_argument("--scale", type=float, default=1.0, help="multiply MOSI's split sizes (ignored with --sizes)")
    s.add_argument("--text-dim", type=int, default=768)
    s.add_argument("--audio-dim", type=int, default=5)
    s.add_argument("--vision-dim", type=int, default=20)
    s.add_argument("--signal-steps", type=int, default=3, help="time steps per clip that carry the sentiment")
    s.add_argument("--signal-dims", type=int, default=3, help="feature dimensions per modality that carry it")
    s.add_argument("--signal-strength", type=float, default=1.0)
    s.add_argument("--conflict-frac", type=float, default=0.1,
                   help="fraction of clips where audio or vision carries the opposite cue")
    s.add_argument("--heterogeneity", type=float, default=0.5, help="0..1, how different the modality spaces are")
    s.add_argument("--noise", nargs="+", default=[], metavar="MOD=STD",
                   help="per-modality cue noise, e.g. text=0.5 audio=1 vision=1.5")
    s.add_argument("--audio-neg-inf-frac", type=float, default=1e-3, help="fraction of audio values set to -inf")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    s.set_defaults(func=run_synth)

    c = sub.add_parser("check", help="verify a dataset file and print a summary",
                       description="Load a dataset pickle safely and report format, checksum, shapes, "
                                   "NaN/inf counts and label statistics per split.")
    c.add_argument("path", help="the .pkl file, or mosi / mosei / mosi_aligned / mosei_aligned")
    c.add_argument("--sha256", help="the published SHA-256 to verify against")
    c.add_argument("--inf-policy", choices=("zero", "error"), default="zero")
    c.add_argument("--no-verify", dest="verify", action="store_false", help="skip the checksum")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=run_check)

    d = sub.add_parser("download", help="download a file (http(s) URL or Google Drive id), resumable, checked",
                       description="Download to DEST.part, resume if interrupted, verify the SHA-256, then move "
                                   "to DEST. Google Drive ids need pip install 'infoenh[download]'.")
    d.add_argument("source", help="http(s) URL or Google Drive file id/URL")
    d.add_argument("dest", help="destination file path")
    d.add_argument("--sha256", help="the published SHA-256")
    d.add_argument("--no-resume", dest="resume", action="store_false")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=run_download, resume_hint="re-run the same command to resume the download from its .part file")
    return p


def _parse_noise(items: List[str]) -> Optional[Dict[str, float]]:
    out: Dict[str, float] = {}
    for it in items:
        key, sep, val = it.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(val)
        except ValueError:
            raise SystemExit(f"infoenh data synth: --noise takes MOD=STD pairs like text=0.5, got {it!r}") from None
    return out or None


def run_synth(args) -> int:
    from .synthetic import split_sizes, write_synthetic

    knobs = dict(seed=args.seed, aligned=args.aligned, sizes=args.sizes, scale=args.scale,
                 text_dim=args.text_dim, audio_dim=args.audio_dim, vision_dim=args.vision_dim,
                 signal_steps=args.signal_steps, signal_dims=args.signal_dims,
                 signal_strength=args.signal_strength, conflict_frac=args.conflict_frac,
                 heterogeneity=args.heterogeneity, noise=_parse_noise(args.noise),
                 audio_neg_inf_frac=args.audio_neg_inf_frac)
    path = write_synthetic(args.out, overwrite=args.force, **knobs)
    sizes = split_sizes(args.sizes, args.scale)
    print(f"wrote SYNTHETIC testbed {path} ({'aligned' if args.aligned else 'unaligned'}, seed {args.seed}, "
          f"train/valid/test {sizes['train']}/{sizes['valid']}/{sizes['test']}); not CMU-MOSI data")
    return 0


def run_check(args) -> int:
    from .check import check_file, format_summary

    summary = check_file(args.path, sha256=args.sha256, inf_policy=args.inf_policy, verify=args.verify)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
    return 0


def run_download(args) -> int:
    from .download import download

    download(args.source, args.dest, sha256=args.sha256, resume=args.resume, quiet=args.quiet)
    return 0
