"""Build a host by name, with InfoEnh switched by one argument, and each host's training defaults.

    build_model("selfmm", ds.dims, infoenh="full", n_train=len(ds["train"]))
    build_model("lf", ds.dims, infoenh="none", modalities=("text", "vision"))   # w/o audio

Training defaults (``TRAIN_DEFAULTS``) and where each comes from:

| host   | batch | accum | lr                            | weight decay | grad clip | loss | patience | epochs |
|--------|-------|-------|-------------------------------|--------------|-----------|------|----------|--------|
| lf     | 32    | 1     | 1e-3                          | 0            | norm 1.0  | L1   | 8        | 40     |
| selfmm | 16    | 4     | audio/vision 5e-3, other 1e-3 | 1e-3         | none      | L1   | 8        | no cap |
| misa   | 16    | 2     | 1e-4                          | 0            | value 0.8 | MSE  | 8        | no cap |

The training loop's switches (:class:`~infoenh.train.config.TrainConfig`):

| host   | accum_tail | clip_at                      | valid_loss |
|--------|------------|------------------------------|------------|
| lf     | step       | step                         | mmsa       |
| selfmm | drop       | step (only with --grad-clip) | mmsa       |
| misa   | drop       | backward                     | mmsa       |

``lf`` is this project's teaching baseline (its values are our choice). ``selfmm`` and ``misa``
follow MMSA's ``config_regression.json`` for MOSI (other datasets, told from the data: their own
batch size, rates, decays, dropouts and loss weights, :mod:`infoenh.models.settings`) (batch_size, update_epochs = gradient
accumulation, learning rates, weight decays, grad_clip, early_stop = patience); MMSA's Self-MM
trainer does not clip gradients, MMSA's MISA trainer clips by value after every ``backward``
(``clip_at="backward"``). Both MMSA trainers loop until early stopping with no epoch cap
(``max_epochs=None``), never step on the batches after an epoch's last full accumulation window
(``accum_tail="drop"``), and select on the mean of the batch-mean validation losses rounded to 4
decimals (``valid_loss="mmsa"``). ``lf``'s 40-epoch cap, its end-of-epoch step and its clipping
at the step are ours.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch

from .._validate import MODALITIES
from .base import HostModel
from .init import seeded_init
from .late_fusion import LateFusion
from .misa import MISA
from .selfmm import SelfMM

MODELS = {"lf": LateFusion, "selfmm": SelfMM, "misa": MISA}

TRAIN_DEFAULTS = {
    "lf": {"batch_size": 32, "accum_steps": 1, "grad_clip": 1.0, "grad_clip_mode": "norm",
           "patience": 8, "max_epochs": 40, "accum_tail": "step", "clip_at": "step", "valid_loss": "mmsa"},
    "selfmm": {"batch_size": 16, "accum_steps": 4, "grad_clip": None, "grad_clip_mode": "norm",
               "patience": 8, "max_epochs": None, "accum_tail": "drop", "clip_at": "step", "valid_loss": "mmsa"},
    "misa": {"batch_size": 16, "accum_steps": 2, "grad_clip": 0.8, "grad_clip_mode": "value",
             "patience": 8, "max_epochs": None, "accum_tail": "drop", "clip_at": "backward", "valid_loss": "mmsa"},
}

# how build_model draws the starting weights: "seeded" (every module from (seed, its path): the same start
# for every arm) or "independent" (construction order from the global generator, this project's earlier
# behaviour: a module built after InfoEnh's gate or FIA's layers starts elsewhere in each arm)
INITS = ("seeded", "independent")

VARIANTS = ("full", "none", "plumbing", "no_fib", "no_fia", "fib_only", "fia_only")
# the controls of FIA's alignment (uniform transport plan): accepted wherever a variant is
CONTROL_VARIANTS = ("fia_uniform", "full_uniform")
ALL_VARIANTS = VARIANTS + CONTROL_VARIANTS


def infoenh_config(variant: Union[str, None, dict] = "full", **kwargs) -> Optional[dict]:
    """Keyword arguments for :class:`infoenh.InfoEnh` for one ablation switch, or ``None``.

    ``"full"``: FIB (gate + InfoNCE) and FIA. ``"none"``: no InfoEnh (the host alone).
    ``"plumbing"``: InfoEnh's plumbing alone, ``use_fib=False, use_infonce=False, use_fia=False``:
    projection to d, top-k with gPool scaling, and the host's attention pooling after it, with the
    gate fixed open (z = e), no InfoNCE and no FIA. It is the control that differs from ``fib``
    only in the gate and its loss, and from ``fia`` only in the alignment.
    ``"no_fib"`` / ``"fia_only"``: ``use_fib=False, use_infonce=False`` (FIA on the top-k
    embeddings, the paper's "w/o FIB"). ``"no_fia"`` / ``"fib_only"``: ``use_fia=False``.
    ``"fia_uniform"`` / ``"full_uniform"``: ``fia_only`` / ``full`` with the transport plan replaced
    by the uniform plan (``fia_plan="uniform"``: each token receives the other modality's mean),
    FIA's width, parameters and pooling unchanged: the controls of the OT alignment itself, in token
    mode only (in feature mode the uniform plan moves each row's own mean, nothing cross-modal: refused).
    Extra ``kwargs`` (d, k, reg, alpha, ...) are passed through. A dict is returned as is.
    """
    if isinstance(variant, dict):
        return dict(variant)
    if variant is None or variant == "none":
        return None
    if variant not in ALL_VARIANTS:
        raise ValueError(f"unknown InfoEnh variant {variant!r}; choose one of {ALL_VARIANTS}")
    cfg = dict(kwargs)
    if variant in CONTROL_VARIANTS and cfg.get("fia_mode") == "feature":
        raise ValueError(f"fia_mode='feature' cannot be combined with the {variant} control: in feature mode the "
                         "uniform plan gives each row its own mean (nothing cross-modal); use fia_mode='token'")
    if variant == "plumbing":
        cfg.update(use_fib=False, use_infonce=False, use_fia=False)
    elif variant in ("no_fib", "fia_only"):
        cfg.update(use_fib=False, use_infonce=False)
    elif variant == "fia_uniform":
        cfg.update(use_fib=False, use_infonce=False, fia_plan="uniform")
    elif variant == "full_uniform":
        cfg.update(fia_plan="uniform")
    elif variant in ("no_fia", "fib_only"):
        cfg.update(use_fia=False)
    return cfg


# host keywords whose default build_model sets from the text mode: fine-tuned Self-MM reads BERT's
# [CLS] state, as MMSA does
TEXT_MODE_DEFAULTS = {("selfmm", "finetune"): {"text_pool": "first"}}


def text_mode_defaults(name: str, text: str) -> dict:
    """The host keywords :func:`build_model` sets for host ``name`` in text mode ``text``, unless given."""
    return dict(TEXT_MODE_DEFAULTS.get((name, text), {}))


def build_model(name: str, dims: Mapping[str, int], *, infoenh: Union[str, None, dict] = "none",
                modalities: Sequence[str] = MODALITIES, n_train: Optional[int] = None,
                infoenh_kwargs: Optional[dict] = None, text: str = "frozen", bert=None,
                init_seed: Optional[int] = None, init: str = "seeded", **model_kwargs) -> HostModel:
    """Build host ``name`` (``"lf"``, ``"selfmm"``, ``"misa"``) for data widths ``dims``.

    ``infoenh``: a variant name (see :func:`infoenh_config`), ``None`` or InfoEnh kwargs.
    ``n_train``: training-set size (Self-MM only: its label generator keeps per-sample state).
    ``text``: ``"frozen"`` (the file's text features) or ``"finetune"`` (BERT fine-tuned from the
    batch's ``text_bert``; ``bert`` is a :class:`~infoenh.models.bert.BertText`, a hub name or a local
    folder, default ``bert-base-uncased``). Fine-tuned Self-MM reads BERT's [CLS] state, as MMSA does,
    unless ``text_pool`` is given.
    ``model_kwargs`` override the host's own hyper-parameters.

    The same start for the same seed (:mod:`infoenh.models.init`): every module's parameters are
    drawn from ``(init_seed, its path)``, so two arms (or a host with and without InfoEnh) start
    every module they share from the same values. ``fit`` passes the run's seed
    (:func:`infoenh.train.trainer.run_init_seed`), so the start never depends on the global
    generator's state (e.g. on whether loading BERT drew from it). ``init_seed=None`` takes one
    number from torch's global generator (after ``torch.manual_seed(s)``: the same for every arm); the construction
    itself leaves the global random state untouched, so training's random draws (dropout) also
    start from the same state in every arm. BERT's pretrained weights are never re-drawn.
    ``init="independent"`` builds as before that: each module drawn from the global generator in
    construction order (no ``init_seed``), so the start of a module depends on what was built before
    it (chapter 8 measures what that costs a paired comparison).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    cfg = infoenh_config(infoenh, **(infoenh_kwargs or {}))
    if name == "selfmm":
        if n_train is None:
            raise ValueError("Self-MM needs n_train (the number of training samples) for its label generator")
        model_kwargs["n_train"] = n_train
    if text not in ("frozen", "finetune"):
        raise ValueError(f"text must be 'frozen' or 'finetune' here (resolve 'auto' with the data first), got {text!r}")
    for key, value in text_mode_defaults(name, text).items():
        model_kwargs.setdefault(key, value)
    if text == "finetune":
        from .bert import DEFAULT_BERT, BertText

        bert = bert if isinstance(bert, BertText) else BertText.load(bert or DEFAULT_BERT)
        dims = {**dims, "text": bert.hidden_size}
    if init == "independent":
        if init_seed is not None:
            raise ValueError("init_seed applies to init='seeded' only; init='independent' draws from torch's generator")
        model = MODELS[name](dims, modalities=modalities, infoenh=cfg, **model_kwargs)
    else:
        seed = int(torch.randint(0, 2 ** 62, (1,)).item()) if init_seed is None else int(init_seed)
        with torch.random.fork_rng(devices=[]):       # what construction draws is re-drawn by seeded_init
            model = MODELS[name](dims, modalities=modalities, infoenh=cfg, **model_kwargs)
        seeded_init(model, seed)
    if text == "finetune":
        model.attach_bert(bert)
    return model
