"""``infoenh data ...``: make a SYNTHETIC testbed, check a dataset file, download one.

    infoenh data synth --out PATH [--aligned|--unaligned] [--seed N] [--sizes 64 16 32] [knobs...]
    infoenh data check PATH [--sha256 HEX] [--inf-policy zero|error] [--json]
    infoenh data download mosi|mosei [--variant unaligned|aligned] [--dest PATH] [--list] [--sha256 HEX]
    infoenh data download URL_OR_DRIVE_FILE_ID DEST [--sha256 HEX]

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

    d = sub.add_parser(
        "download",
        help="download MOSI/MOSEI from MMSA's Drive folder, or a file by URL / Drive id; resumable, checked",
        description="infoenh data download mosi|mosei [--variant unaligned|aligned] [--dest PATH] [--list]: find the "
                    "file in MMSA's public Google Drive folder by listing only the folders on its path "
                    "(MOSI/Processed/unaligned_50.pkl), download just that file, verify MMSA's published SHA-256 "
                    "and put it at the default path ($INFOENH_DATA or ~/data, MMSA's tree below it). "
                    "infoenh data download URL_OR_DRIVE_FILE_ID DEST: one file by http(s) URL or Drive file id. "
                    "Both write DEST.part, resume it if interrupted, and move it to DEST only once verified. "
                    "Drive downloads need pip install 'infoenh[download]'.")
    d.add_argument("source", help="mosi, mosei (also mosi_aligned, mosei_aligned), or an http(s) URL or a Google Drive "
                                  "file id/link (not a folder link)")
    d.add_argument("dest", nargs="?", help="destination: a .pkl file path, or a folder that gets MMSA's tree "
                                           "(MOSI/Processed/...) below it; required for a URL or file id; put it "
                                           "right after SOURCE, or use --dest anywhere")
    d.add_argument("--dest", dest="dest_option", metavar="PATH", help="same as the DEST argument")
    d.add_argument("--variant", choices=("unaligned", "aligned"),
                   help="for mosi/mosei: unaligned_50.pkl (default) or aligned_50.pkl")
    d.add_argument("--list", action="store_true",
                   help="print what the Drive folders along the path hold (kind, name, id) and download nothing; "
                        "also takes a Drive folder link or id")
    d.add_argument("--sha256", help="the expected SHA-256 (for mosi/mosei default: the sum MMSA publishes)")
    d.add_argument("--no-resume", dest="resume", action="store_false")
    d.add_argument("--expected-size", type=int, default=None, metavar="BYTES",
                   help="the file's size in bytes, when known: a body of another length is refused")
    d.add_argument("--overwrite", action="store_true",
                   help="replace an existing DEST that fails its check (it stays until the new file is complete)")
    d.add_argument("--total-timeout", type=float, default=21600.0, metavar="SECONDS",
                   help="give up after this long in all, listing and transfer (default 6 h; a listing alone stops "
                        "after at most 2 min per folder page); the partial file is kept for a resume")
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
    from . import drive
    from .paths import NAMES

    if args.dest and args.dest_option and args.dest != args.dest_option:
        raise ValueError(f"two destinations given ({args.dest!r} and --dest {args.dest_option!r}); give one")
    dest = args.dest_option or args.dest
    name = args.source.strip().lower()
    if name in NAMES:
        return _download_dataset(args, name, dest)
    if args.variant:
        raise ValueError(f"--variant applies to mosi / mosei, not to {args.source!r}")
    folder_id = drive.folder_id_from_url(args.source)
    if args.list:
        from .download import source_kind

        if folder_id is None and source_kind(args.source) == "gdrive_id":
            folder_id = args.source
        if folder_id is None:
            raise ValueError(f"--list takes mosi / mosei or a Google Drive folder link or id, not {args.source!r}")
        drive.check_id(folder_id)
        print(f"Google Drive folder {drive.public_folder_url(folder_id)}:")
        folder = drive.fetch_folder(folder_id, deadline=drive.deadline_after(args.total_timeout))
        print(drive.format_listing([folder], ()))
        return 0
    if folder_id is not None or args.source.strip() == drive.MMSA_FOLDER_ID:
        fid = folder_id or args.source.strip()
        raise ValueError(
            f"{args.source!r} is a Google Drive folder, not a file; `infoenh data download URL_OR_ID DEST` fetches one "
            f"file. For MMSA's CMU-MOSI / CMU-MOSEI pickles run `infoenh data download mosi --variant unaligned` (or "
            f"mosei, --variant aligned): it finds the file inside MMSA's folder and downloads only that. To see what "
            f"this folder holds: `infoenh data download {drive.public_folder_url(fid)} --list`; then pass the file's "
            f"id (or its link https://drive.google.com/file/d/<ID>/view) with DEST.")
    if dest is None:
        raise ValueError(f"give DEST, the file to write, after {args.source!r} (or use `infoenh data download mosi`, "
                         "which has a default place)")
    from .download import download

    download(args.source, dest, sha256=args.sha256, resume=args.resume, quiet=args.quiet,
             expected_size=args.expected_size, overwrite=args.overwrite, total_timeout=args.total_timeout)
    return 0


def _download_dataset(args, name: str, dest) -> int:
    from . import drive

    dataset = name.split("_")[0]
    if name.endswith("_aligned") and args.variant == "unaligned":
        raise ValueError(f"{name} is the aligned file; drop --variant unaligned or say {dataset}")
    variant = args.variant or ("aligned" if name.endswith("_aligned") else "unaligned")
    if args.list:
        parts = drive.dataset_path(dataset, variant)
        print(f"MMSA's Google Drive folder {drive.public_folder_url(drive.MMSA_FOLDER_ID)}, along "
              f"{'/'.join(parts[:-1])}/ (the file for --variant {variant} is marked):")
        try:
            levels, entry = drive.walk(parts, deadline=drive.deadline_after(args.total_timeout))
        except drive.DriveListingError as exc:
            if getattr(exc, "levels", None):
                print(drive.format_listing(exc.levels, parts))
            raise
        print(drive.format_listing(levels, parts, entry))
        return 0
    drive.download_dataset(dataset, variant, dest, sha256=args.sha256, resume=args.resume, quiet=args.quiet,
                           total_timeout=args.total_timeout)
    return 0
