"""infoenh train and infoenh ablate.

    infoenh train --data synthetic --model selfmm --seeds 1111 1112 --out runs/selfmm
    infoenh train --data data/MOSI/Processed/unaligned_50.pkl --model misa --no-fia --out runs/misa_nofia
    infoenh ablate --data synthetic --model lf --arms baseline full no_text no_text_full --out runs/abl

``train`` writes ``OUT/results.json`` (per-seed valid/test metrics at the epoch selected on
validation loss, mean and std over seeds, the configuration) and prints a table; an option the
chosen configuration never reads (``--reg`` with ``--no-fia``, ``--k`` with ``--no-infoenh``, ...)
is named in a warning. ``ablate``
writes ``OUT/ablation.json`` and ``OUT/ablation.md``. Re-running a command with the same
``--out`` resumes unfinished seeds from their checkpoints and reuses finished ones.

For selfmm and misa the training loop is MMSA's unless a flag says otherwise: no epoch cap (until
early stopping), the batches after an epoch's last full accumulation window never stepped
(``--accum-tail``), MISA clipping after every backward (``--clip-at``), selection on the mean of
the batch-mean validation losses rounded to 4 decimals (``--valid-loss``), MISA reading audio and
vision up to the text's length (``--misa-lengths``).
"""
from __future__ import annotations

import argparse
import warnings

from .._validate import MODALITIES
from ..data.dataset import EVAL_ORDERS
from ..models.settings import DATASETS
from ..models.registry import MODELS, TRAIN_DEFAULTS
from ..fia import FIA_MODES, OT_STOPS
from ..infonce import REDUCTIONS
from .config import (ACCUM_TAILS, CLI_INFOENH_OPTIONS, CLIP_AT, HOST_OPTIONS, VALID_LOSSES, InactiveOptionWarning,
                     inactive_options)


_RESUME = ("re-run the same command to resume: every seed continues from its last finished epoch (checkpoints "
           "in --out), finished seeds are reused")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="'synthetic' (the generated testbed) or a path to an MMSA/MulT .pkl")
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="host model: lf (late fusion), selfmm, misa")
    p.add_argument("--out", required=True, help="output directory (results, checkpoints, logs)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 1111 1112 1113 1114 1115)")
    p.add_argument("--epochs", type=int, default=None,
                   help="most epochs per run (default: selfmm and misa no cap, they run until early stopping as "
                        "MMSA does; lf 40)")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs (default 8, MMSA)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size (default: the host's, " + ", ".join(f"{k} {v['batch_size']}" for k, v in
                                                                        TRAIN_DEFAULTS.items()) + ")")
    p.add_argument("--accum-steps", type=int, default=None, help="batches per optimiser step (default: the host's; lf 1, selfmm 4 and misa 2 as MMSA)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate for every parameter group but BERT's (default: the host's on the dataset)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay for every parameter group but BERT's (default: the host's on the dataset)")
    p.add_argument("--settings-of", choices=DATASETS, default=None,
                   help="whose MMSA settings the host takes (batch size, per-group learning rates and weight decays, "
                        "dropouts, loss weights; infoenh.models.settings): default told from the data (the published "
                        "file, a path component, the feature widths; the SYNTHETIC testbed is MOSI's). sims is "
                        "refused: MMSA's Chinese BERT and SIMS metrics are not implemented here")
    p.add_argument("--group-lr", nargs="+", default=None, metavar="GROUP=LR",
                   help="one optimiser group's learning rate, e.g. vision=1e-4 (Self-MM: audio, vision, other, bert; "
                        "MISA: other, and BERT follows it: set BERT's with --bert-lr)")
    p.add_argument("--group-weight-decay", nargs="+", default=None, metavar="GROUP=WD",
                   help="one optimiser group's weight decay, e.g. other=0.01")
    p.add_argument("--grad-clip", type=float, default=None, help="gradient clipping threshold, 0 = off (default: the host's)")
    p.add_argument("--lr-schedule", choices=("none", "plateau"), default="none",
                   help="none (default, MMSA) or plateau: halve the learning rate after 3 epochs without a better "
                        "validation loss")
    p.add_argument("--modalities", nargs="+", choices=MODALITIES, default=None,
                   help="build the model on these modalities only (missing-modality ablation)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available, else cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="fp32 (default, as MMSA): float32 everywhere; bf16: bf16 autocast of the encoders (BERT "
                        "included) on any device; auto: bf16 on CUDA, fp32 on CPU. Heads, losses, selection and "
                        "metrics are float32 in every case (benchmarks/gpu_check.sh measures bf16 against fp32)")
    p.add_argument("--no-amp", action="store_true", help="same as --precision fp32")
    p.add_argument("--text", choices=("auto", "finetune", "frozen"), default="auto",
                   help="auto: fine-tune BERT when the data has text_bert (real data), frozen features otherwise")
    p.add_argument("--bert", default="bert-base-uncased", help="BERT weights: a hub name or a local folder")
    p.add_argument("--bert-lr", type=float, default=None, help="BERT's learning rate (default: the host's; Self-MM 5e-5)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (train's default: the fastest of 1, 2 and all cores, measured on a "
                        "training step of this host at its batch size when the run starts; ablate's: torch's)")
    t = p.add_argument_group("training loop (default: MMSA's for selfmm and misa)")
    t.add_argument("--accum-tail", choices=ACCUM_TAILS, default=None,
                   help="the batches after an epoch's last full --accum-steps window: drop (run, never stepped, as "
                        "MMSA; selfmm/misa default) or step (one shorter step at the end; lf default)")
    t.add_argument("--clip-at", choices=CLIP_AT, default=None,
                   help="where --grad-clip clips: backward (after every backward, the accumulated gradient, as "
                        "MMSA's MISA; misa default) or step (once before each step; lf and selfmm default)")
    t.add_argument("--valid-loss", choices=VALID_LOSSES, default=None,
                   help="the validation loss that selects the epoch: mmsa (mean of batch means rounded to 4 "
                        "decimals, as MMSA; default), batch_mean (unrounded) or sample_mean (per-sample mean)")
    t.add_argument("--eval-order", choices=EVAL_ORDERS, default="shuffled",
                   help="valid and test batches: shuffled (default, as MMSA's loaders, by generators seeded from the "
                        "seed; decides which clips share the short last batch of the validation loss) or file order")
    t.add_argument("--init", choices=("seeded", "independent"), default="seeded",
                   help="starting weights: seeded (default: each module from the seed and its path, the same start "
                        "for every arm) or independent (construction order, the earlier behaviour; to measure what "
                        "the shared start changes)")
    t.add_argument("--misa-lengths", choices=HOST_OPTIONS["lengths"][2], default=None,
                   help="--model misa only: read audio and vision up to the text's length (text, MMSA's packing, "
                        "default) or with their own masks (own)")
    t.add_argument("--selfmm-heads", choices=HOST_OPTIONS["heads"][2], default=None,
                   help="--model selfmm only, with InfoEnh: the unimodal heads read each modality's own filtered "
                        "rows (unimodal, default) or the pooled enhanced sequence (enhanced)")
    g = p.add_argument_group("InfoEnh")
    g.add_argument("--k", type=int, default=None, help="time steps kept by top-k pooling (InfoEnh default 16)")
    g.add_argument("--d", type=int, default=None, help="InfoEnh width d (default 128)")
    g.add_argument("--reg", type=float, default=None, help="entropic regularisation of the OT (default 0.1)")
    g.add_argument("--alpha", type=float, default=None, help="weight of the InfoNCE terms (default 0.5, the paper's)")
    g.add_argument("--fia-mode", choices=FIA_MODES, default=None, help="what FIA transports (default token)")
    g.add_argument("--ot-iters", type=int, default=None, help="Sinkhorn iteration cap (default: InfoEnh's, 100)")
    g.add_argument("--ot-tol", type=float, default=None,
                   help="threshold of Sinkhorn's stopping rule, > 0 (default: 1e-6 for --ot-stop marginal, 0.01 for "
                        "scaling)")
    g.add_argument("--ot-stop", choices=OT_STOPS, default=None,
                   help="Sinkhorn's stopping rule: marginal (POT's marginal error, default) or scaling (the "
                        "paper's mean change of the scaling vector)")
    g.add_argument("--infonce-reduction", choices=REDUCTIONS, default=None,
                   help="InfoNCE over a batch's anchors: mean (default; alpha means the same at any batch size) "
                        "or sum (eq. 5 literally)")
    g.add_argument("--straight-through", action="store_true", default=None,
                   help="beyond the paper: back-propagate through FIB's hard mask as if it were the gate "
                        "(straight-through estimator; default off)")
    g.add_argument("--fia-symmetric", action=argparse.BooleanOptionalAction, default=None,
                   help="FIA solves each unordered pair of modalities once and transposes the plan for the "
                        "reverse pair (default; exact at convergence); --no-fia-symmetric solves every ordered pair")
    s = p.add_argument_group("synthetic data")
    s.add_argument("--synthetic-scale", choices=("ci", "small", "mosi"), default=None,
                   help="testbed size: ci (tiny), small (CPU default), mosi (MOSI's sizes/shapes, GPU default)")
    s.add_argument("--synthetic-seed", type=int, default=0, help="seed of the generated testbed")
    p.add_argument("--fresh", action="store_true",
                   help="delete the seeds' existing checkpoints and results in --out (said on stderr) and start again")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _given(args, dest: str):
    """The value of a flag, or None when it was not given (every flag _given reads defaults to
    None: --straight-through is a store_true with default None, --[no-]fia-symmetric gives False)."""
    return getattr(args, dest, None)


def _model_kwargs(args) -> dict:
    """Host keywords from ``--misa-lengths`` / ``--selfmm-heads``, each only when given (the
    configuration refuses one given to the wrong host: ``TrainConfig.resolved``)."""
    dests = {key: flag[2:].replace("-", "_") for key, (flag, _, _) in HOST_OPTIONS.items()}
    return {key: _given(args, d) for key, d in dests.items() if _given(args, d) is not None}


def _groups(values, flag: str) -> dict:
    """``["vision=1e-4", ...]`` -> ``{"vision": 1e-4}``, with a one-line error naming ``flag``."""
    out = {}
    for v in values or []:
        name, sep, num = str(v).partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(num)
        except ValueError:
            raise ValueError(f"{flag} takes GROUP=VALUE pairs such as vision=1e-4, got {v!r}") from None
    return out


def _config(args, infoenh: str):
    from .config import TrainConfig

    # a key is set only when its flag is given: a run without the flag keeps the fingerprint it had
    # before the flag existed
    ie = {k: _given(args, k) for k in CLI_INFOENH_OPTIONS if _given(args, k) is not None}
    return TrainConfig(model=args.model, infoenh=infoenh, modalities=tuple(args.modalities or MODALITIES),
                       epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                       accum_steps=args.accum_steps, lr=args.lr, weight_decay=args.weight_decay,
                       grad_clip=args.grad_clip, accum_tail=args.accum_tail, clip_at=args.clip_at,
                       valid_loss=args.valid_loss, lr_schedule=args.lr_schedule, device=args.device,
                       eval_order=args.eval_order, init=args.init, settings_of=args.settings_of,
                       group_lr=_groups(args.group_lr, "--group-lr"),
                       group_weight_decay=_groups(args.group_weight_decay, "--group-weight-decay"),
                       amp=not args.no_amp, precision=args.precision,
                       text=args.text, bert=args.bert, bert_lr=args.bert_lr, infoenh_kwargs=ie,
                       model_kwargs=_model_kwargs(args), quiet=args.quiet)


def _threads(args) -> None:
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def _thread_default(args, ds, cfg) -> dict:
    """``--threads`` as given, else the count measured fastest for this host and batch size
    (:mod:`infoenh.train.threads`), set for the run; its header line is printed."""
    from .threads import choose_threads, header_line

    if args.threads is not None:
        doc = {"threads": args.threads, "threads_chosen_by": "--threads"}
    else:
        import torch

        doc = choose_threads(ds, cfg)
        torch.set_num_threads(doc["threads"])
    _log(args)(header_line(doc, cfg.batch_size))
    return doc


def _log(args):
    return (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))


def cmd_train(args) -> int:
    from .results import format_table
    from .runner import load_data, train_seeds

    _threads(args)
    variant = ("none" if args.no_infoenh else "plumbing" if args.plumbing else "no_fib" if args.no_fib
               else "no_fia" if args.no_fia else "fia_uniform" if args.fia_uniform
               else "full_uniform" if args.full_uniform else "full")
    cfg = _config(args, variant).resolved()
    for msg in inactive_options(cfg):     # one line each on the command line
        warnings.warn(msg, InactiveOptionWarning, stacklevel=2)
    ds, info = load_data(args.data, scale=args.synthetic_scale, synthetic_seed=args.synthetic_seed)
    info = {**info, **_thread_default(args, ds, cfg)}   # the thread count, recorded in results.json
    doc = train_seeds(ds, cfg, args.seeds, args.out, data_info=info, fresh=args.fresh, log=_log(args))
    print(format_table(doc))
    print(f"results: {args.out}/results.json")
    return 0


def cmd_ablate(args) -> int:
    from .ablate import run_ablation
    from .runner import load_data

    _threads(args)
    cfg = _config(args, "full")
    cfg.resolved()                     # every option checked before the data is loaded
    ds, info = load_data(args.data, scale=args.synthetic_scale, synthetic_seed=args.synthetic_seed)
    if args.n_boot < 1:
        raise ValueError(f"--n-boot must be >= 1 (bootstrap resamples for the CI), got {args.n_boot}")
    run_ablation(ds, cfg, args.arms, args.seeds, args.out, data_info=info, fresh=args.fresh,
                 n_boot=args.n_boot, log=_log(args))
    with open(f"{args.out}/ablation.md") as f:
        print(f.read())
    print(f"results: {args.out}/ablation.json, {args.out}/ablation.md")
    return 0


def add_parser(subparsers) -> None:
    """Register ``train`` and ``ablate``."""
    from .ablate import ARMS

    p = subparsers.add_parser("train", help="train a host (lf, selfmm, misa) with or without InfoEnh over seeds",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    sw = p.add_mutually_exclusive_group()
    sw.add_argument("--no-infoenh", action="store_true", help="the host alone")
    sw.add_argument("--no-fib", action="store_true", help="InfoEnh without FIB (no gate, no InfoNCE): FIA only")
    sw.add_argument("--no-fia", action="store_true", help="InfoEnh without FIA: FIB only")
    sw.add_argument("--plumbing", action="store_true",
                    help="InfoEnh's plumbing alone (projection, top-k, gPool, attention pooling; gate open, no "
                         "InfoNCE, no FIA): the control the ablations compare FIB and FIA with")
    sw.add_argument("--fia-uniform", action="store_true",
                    help="--no-fib with FIA's transport plan replaced by the uniform plan (each token receives the "
                         "other modalities' means; FIA's width and parameters): the control of the OT alignment")
    sw.add_argument("--full-uniform", action="store_true",
                    help="InfoEnh (FIB + FIA) with the uniform plan in place of Sinkhorn's: the control of the OT "
                         "alignment with FIB on")
    p.set_defaults(func=cmd_train, resume_hint=_RESUME)

    a = subparsers.add_parser("ablate", help="run the paper's ablation arms over the same seeds and compare them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(a)
    a.add_argument("--arms", nargs="+", choices=list(ARMS), default=None, metavar="ARM",
                   help="arms to run (default: all; each also runs the arms it is compared with): "
                        + "; ".join(f"{k} = {v['label']}" for k, v in ARMS.items()))
    a.add_argument("--n-boot", type=int, default=10000,
                   help="bootstrap resamples for the CI, which is reported from 10 seeds on (below that: the t "
                        "interval; default 10000)")
    a.set_defaults(func=cmd_ablate, resume_hint=_RESUME)
