"""The ablation arms: what each one switches, and what each comparison between two of them isolates.

| arm                | InfoEnh variant | what runs after the host's encoders                       | modalities |
|--------------------|-----------------|-----------------------------------------------------------|------------|
| baseline           | none            | the host's own pooling (LSTM last state, text mean, ...)  | t, a, v    |
| plumbing           | plumbing        | projection to d, top-k with gPool scaling, attention       | t, a, v    |
|                    |                 | pooling (Self-MM: one more for its unimodal heads, as in   |            |
|                    |                 | every InfoEnh arm); gate fixed open (z = e), no InfoNCE,   |            |
|                    |                 | no FIA                                                     |            |
| fib                | fib_only        | plumbing + the gate and its InfoNCE loss (paper "w/o FIA") | t, a, v    |
| fia_uniform        | fia_uniform     | plumbing + FIA's concatenation with the uniform plan: each | t, a, v    |
|                    |                 | token receives the other modalities' means (FIA's width)   |            |
| fia                | fia_only        | plumbing + OT alignment, gate open (paper "w/o FIB")       | t, a, v    |
| full_uniform       | full_uniform    | fib + FIA's concatenation with the uniform plan            | t, a, v    |
| full               | full            | plumbing + gate + InfoNCE + FIA (paper "+InfoEnh")         | t, a, v    |
| no_<m>             | none            | the host without modality m (paper Table 3)                | two        |
| no_<m>_plumbing    | plumbing        | its plumbing control                                       | two        |
| no_<m>_full        | full            | with InfoEnh                                               | two        |

Why ``plumbing``: every InfoEnh arm replaces the host's pooling by InfoEnh's projection, top-k
selection and attention pooling. Compared with ``baseline`` alone, a gain of ``fib`` or ``fia``
could come from that change of plumbing, not from the gate or the alignment. ``plumbing`` has the
same plumbing with the gate open and no InfoNCE and no FIA, so ``fib - plumbing`` isolates the gate
and its loss (the gate's parameters are the only ones ``fib`` adds), and ``plumbing - baseline``
the plumbing itself.

Why ``fia_uniform`` and ``full_uniform``: FIA concatenates each modality's rows with what it
receives from the others, so its output is M times wider and the host's fusion input (Self-MM) or
projection (MISA, late fusion) grows with it; ``fia - plumbing`` therefore measures the alignment,
the cross-modal context and the wider head together. ``fia_uniform`` has FIA's exact width,
parameters and pooling, with Sinkhorn's plan replaced by the uniform plan a b^T (each token
receives the other modality's mean): ``fia - fia_uniform`` isolates the optimal-transport alignment
itself, ``fia_uniform - plumbing`` the cross-modal context and the width; likewise
``full - full_uniform`` with FIB on. Both controls need FIA's token mode (the default): in feature
mode the uniform plan gives each row its own mean, nothing cross-modal, so ``--fia-mode feature``
with a uniform-plan arm is refused when the configuration is resolved. A control and its arm have the same parameter count except
the part under test (``tests/test_arms.py``), every arm of a host pools the same way (Self-MM's
unimodal heads have their own attention pool in every InfoEnh arm), and every module two arms share
starts from the same values for the same seed (:mod:`infoenh.models.init`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._validate import MODALITIES

# label: what the arm is, in words, without its own name (tables print "arm: label")
ARMS: Dict[str, Dict[str, Any]] = {
    "baseline": {"infoenh": "none", "drop": None, "label": "host alone (w/o InfoEnh)"},
    "plumbing": {"infoenh": "plumbing", "drop": None, "label": "gate open, no InfoNCE, no FIA"},
    "fib": {"infoenh": "fib_only", "drop": None, "label": "+FIB (w/o FIA)"},
    "fia_uniform": {"infoenh": "fia_uniform", "drop": None, "label": "FIA's width, uniform plan (no OT), no FIB"},
    "fia": {"infoenh": "fia_only", "drop": None, "label": "+FIA (w/o FIB)"},
    "full_uniform": {"infoenh": "full_uniform", "drop": None, "label": "FIB + FIA's width, uniform plan (no OT)"},
    "full": {"infoenh": "full", "drop": None, "label": "+InfoEnh (FIB + FIA)"},
}
for _m in MODALITIES:
    ARMS[f"no_{_m}"] = {"infoenh": "none", "drop": _m, "label": f"w/o {_m}"}
    ARMS[f"no_{_m}_plumbing"] = {"infoenh": "plumbing", "drop": _m, "label": f"w/o {_m}, {ARMS['plumbing']['label']}"}
    ARMS[f"no_{_m}_full"] = {"infoenh": "full", "drop": _m, "label": f"w/o {_m} +InfoEnh"}

# what the difference (arm - reference) measures
_ISOLATES = {
    ("plumbing", "baseline"): "InfoEnh's plumbing alone (projection, top-k, gPool, attention pooling in place of "
                              "the host's pooling; Self-MM's unimodal heads get an attention pool of their own)",
    ("fib", "plumbing"): "FIB proper: the gate and its InfoNCE loss, plumbing held fixed",
    ("fia_uniform", "plumbing"): "the cross-modal context (each token receives the other modalities' means) and "
                                 "FIA's wider head, no alignment",
    ("fia", "fia_uniform"): "the OT alignment itself: Sinkhorn's plan against the uniform plan, width, parameters "
                            "and pooling held fixed",
    ("fia", "plumbing"): "FIA with the cross-modal context and the wider head it brings (not the alignment alone: "
                         "see fia vs fia_uniform)",
    ("full_uniform", "plumbing"): "FIB, the cross-modal context and FIA's wider head, no alignment",
    ("full", "full_uniform"): "the OT alignment itself with FIB on: Sinkhorn's plan against the uniform plan, "
                              "width, parameters and pooling held fixed",
    ("full", "plumbing"): "FIB and FIA together (with FIA's context and wider head), plumbing held fixed",
    ("fib", "baseline"): "FIB with the plumbing change it brings (not FIB alone: see fib vs plumbing)",
    ("fia", "baseline"): "FIA with the plumbing change it brings (not FIA alone: see fia vs plumbing)",
    ("full", "baseline"): "all InfoEnh changes, plumbing included (the paper's comparison)",
    ("fia_uniform", "baseline"): "the plumbing, the cross-modal context and FIA's wider head, no alignment",
    ("full_uniform", "baseline"): "all InfoEnh changes except the alignment (uniform plan)",
}


_KIND_WORDS = {"plumbing": "InfoEnh's plumbing", "fib": "FIB", "fia": "FIA", "full": "InfoEnh (FIB + FIA)",
               "fia_uniform": "FIA's width with the uniform plan", "full_uniform": "FIB + FIA's width with the uniform plan"}
# the uniform-plan control of an arm with FIA: what the alignment itself is measured against
_UNIFORM_CONTROL = {"fia": "fia_uniform", "full": "full_uniform"}


def _base_of(arm: str) -> Tuple[Optional[str], str]:
    """``"no_audio_full"`` -> ``("audio", "full")``; ``"fib"`` -> ``(None, "fib")``."""
    for m in MODALITIES:
        p = f"no_{m}"
        if arm == p:
            return m, "baseline"
        if arm.startswith(p + "_"):
            return m, arm[len(p) + 1:]
    return None, arm


def _name(drop: Optional[str], kind: str) -> str:
    if drop is None:
        return kind
    return f"no_{drop}" if kind == "baseline" else f"no_{drop}_{kind}"


def references(arm: str, present: Optional[Sequence[str]] = None) -> List[str]:
    """The arms ``arm`` is compared with, paired by seed: the host alone (``baseline``) and the
    plumbing control for every InfoEnh arm, and, when it is among the arms run (``present``), the
    uniform-plan control of an arm with FIA (``fia``: ``fia_uniform``; ``full``: ``full_uniform``:
    run on request, so a grid of the paper's arms does not grow by a third); a missing-modality arm also with the full-modality
    baseline, and its InfoEnh arms with the host without that modality and its plumbing."""
    drop, kind = _base_of(arm)
    refs: List[str] = []
    if kind != "baseline":
        refs.append(_name(drop, "baseline"))
        if kind != "plumbing":
            refs.append(_name(drop, "plumbing"))
        control = None if present is None else _UNIFORM_CONTROL.get(kind)
        if control is not None and _name(drop, control) in present:
            refs.append(_name(drop, control))
    if drop is not None:
        refs.append("baseline")
    return list(dict.fromkeys(r for r in refs if r != arm))


def isolates(arm: str, ref: str) -> str:
    """In words: what ``arm - ref`` measures."""
    d_a, k_a = _base_of(arm)
    d_r, k_r = _base_of(ref)
    if d_a == d_r:
        text = _ISOLATES.get((k_a, k_r), f"{arm} against {ref}")
        return text if d_a is None else f"without {d_a}: {text}"
    if k_a == "baseline" and d_r is None and k_r == "baseline":
        return f"removing {d_a} from the host"
    return f"{_KIND_WORDS.get(k_a, k_a)} without {d_a}, against the {ref} arm on all three modalities"


def arm_config(base, arm: str):
    """``base`` (a :class:`~infoenh.train.config.TrainConfig`) with the arm's InfoEnh variant and modalities."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {list(ARMS)}")
    spec = ARMS[arm]
    mods = tuple(m for m in MODALITIES if m != spec["drop"])
    return dataclasses.replace(base, infoenh=spec["infoenh"], modalities=mods)


_VARIANT_ALIASES = {"no_fib": "fia_only", "no_fia": "fib_only"}


def arm_of(infoenh: str, modalities) -> str:
    """The arm name a configuration (InfoEnh variant, modalities) corresponds to, e.g. ``("full",
    ("audio", "vision"))`` -> ``"no_text_full"``; a configuration with no arm gets a descriptive name."""
    variant = _VARIANT_ALIASES.get(infoenh, infoenh)
    mods = tuple(m for m in MODALITIES if m in tuple(modalities))
    dropped = [m for m in MODALITIES if m not in mods]
    for name, spec in ARMS.items():
        if spec["infoenh"] == variant and ([spec["drop"]] if spec["drop"] else []) == dropped:
            return name
    return f"{variant} on {'+'.join(mods)}"


def with_references(arms: List[str]) -> List[str]:
    """``arms`` with every reference they are compared with added, each before its first user."""
    out: List[str] = []

    def add(a: str) -> None:
        for r in references(a):
            if r not in out:
                add(r)
        if a not in out:
            out.append(a)

    for a in arms:
        add(a)
    return out
