"""Atomic checkpoint files: write to a temporary file in the same folder, flush to disk, then
``os.replace`` it over the old one, so a run killed at any moment leaves either the previous or
the new checkpoint, never half of one. Loading uses ``weights_only=True`` (no code runs)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)          # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state: Dict[str, Any], path) -> None:
    """Save ``state`` (tensors and plain containers only) atomically to ``path``."""
    _atomic(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt file, or one that holds arbitrary objects
        raise RuntimeError(f"cannot load checkpoint {path}: {_load_problem(e)}. Delete it (or use another --out) "
                           "to start the run afresh") from e


def _load_problem(e: Exception) -> str:
    """What was wrong with a checkpoint, in our words: torch's weights-only refusal ends with advice
    to allow-list the object (``add_safe_globals([eval])``), which must never be followed for a file
    infoenh wrote (it holds tensors and plain containers only)."""
    import re

    text = " ".join(str(e).split())
    glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if glob:
        return (f"it refers to {glob.group(1)}, which no checkpoint written by infoenh holds (the file is not "
                "infoenh's or was altered; nothing in it was run)")
    why = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if why or "Weights only load failed" in text:
        reason = why.group(1).strip()[:120] if why else "unreadable"
        return f"not a checkpoint written by infoenh (corrupt, truncated or another format: {reason})"
    return text[:300] + ("…" if len(text) > 300 else "")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_jsonl(records, path) -> None:
    """Write one JSON line per record, atomically (the whole file is replaced)."""
    data = "".join(json.dumps(_finite(r), allow_nan=False) + "\n" for r in records).encode()
    _atomic(Path(path), lambda f: f.write(data))


def remove_leftovers(folder) -> list:
    """Delete the temporary files of saves that a killed process left in ``folder``
    (``.NAME.*.tmp``, written by :func:`_atomic`); return their names. Call it holding the
    folder's lock, so no live save is touched."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        try:
            p.unlink()
            removed.append(p.name)
        except FileNotFoundError:
            pass
    return removed


def write_json(obj: Any, path) -> None:
    """Write strict JSON atomically (indent 2); NaN/inf (an undefined metric) become ``null``."""
    data = (json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n").encode()
    _atomic(Path(path), lambda f: f.write(data))


# ------------------------------------------------------------------------------ sealed records
# A run's record (run.json) carries the SHA-256 of its own content, so that an edit made after the
# run wrote it (a metric typed over, a field removed) is noticed when it is read again.
SEAL_KEY = "checksum"


def _canonical(obj: Any) -> bytes:
    """The bytes a sealed record's checksum is taken over: ``obj`` as JSON would hold it (NaN as
    null, tuples as lists, keys as strings), keys sorted, no whitespace."""
    plain = json.loads(json.dumps(_finite(obj), allow_nan=False))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(obj: Dict[str, Any]) -> Dict[str, Any]:
    """``obj`` with ``checksum: 'sha256:…'`` over every other field (whatever fields it has)."""
    import hashlib

    body = {k: v for k, v in obj.items() if k != SEAL_KEY}
    return {**body, SEAL_KEY: "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()}


def seal_problem(doc: Dict[str, Any]) -> str:
    """Why a record read back is not what :func:`seal` wrote ("" when it is)."""
    import hashlib

    stored = doc.get(SEAL_KEY)
    if not isinstance(stored, str):
        return "has no checksum (written by an older infoenh, or edited)"
    body = {k: v for k, v in doc.items() if k != SEAL_KEY}
    if stored != "sha256:" + hashlib.sha256(_canonical(body)).hexdigest():
        return "does not match its checksum: it was edited after the run wrote it"
    return ""


def file_sha256(path) -> str:
    """``'sha256:…'`` of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
