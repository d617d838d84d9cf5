"""BERT fine-tuned inside a host, as MMSA's Self-MM and MISA do, from MMSA's ``text_bert`` field.

    bert = BertText.load("bert-base-uncased")     # hub weights, cached; or a local folder
    states, mask = bert(batch["text_bert"])        # [B, 3, L] ids/mask/segments -> [B, L, H], [B, L]

MMSA's pickles hold, per clip, ``text_bert [3, L_t]``: the WordPiece ids, the attention mask and
the segment ids that BERT reads. With ``text="finetune"`` a host replaces the frozen ``text``
features of the file with BERT's last hidden states computed live from those ids, and BERT's
weights are trained with the rest (its own parameter group: :func:`split_bert_groups`). Everything
after (InfoEnh, the host's pooling and heads) is unchanged. ``transformers`` is an extra
(``pip install "infoenh[bert]"``); it is imported only when BERT is used.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

DEFAULT_BERT = "bert-base-uncased"
TEXT_MODES = ("auto", "finetune", "frozen")
# MMSA's Self-MM: BERT's decayed parameters get weight decay 1e-3; biases and LayerNorm weights none
_NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("fine-tuning BERT needs the transformers package: pip install 'infoenh[bert]' "
                          "(or train on the frozen text features with --text frozen)") from e
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


class BertText(nn.Module):
    """A ``transformers`` BertModel that reads MMSA's ``text_bert`` ``[B, 3, L]``."""

    def __init__(self, bert: nn.Module, source: str = "?"):
        super().__init__()
        self.bert = bert
        self.source = source
        self.hidden_size = int(bert.config.hidden_size)

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_BERT) -> "BertText":
        """Pretrained weights from a local folder written by ``save_pretrained``, else from the
        Hugging Face cache (``HF_HOME``), else downloaded once from the hub. Without a network
        (``HF_HUB_OFFLINE=1``, or the hub not answering one quick probe) a name that is not cached
        fails at once with one clear error, instead of waiting on the hub client's retries."""
        tf = _transformers()
        local = os.path.isdir(os.path.expanduser(str(name_or_path)))
        try:
            if local:
                model = tf.BertModel.from_pretrained(os.path.expanduser(str(name_or_path)), add_pooling_layer=False)
            else:
                model = _from_cache_or_hub(tf, str(name_or_path))
        except (OSError, ValueError) as e:
            raise OSError(_missing_message(name_or_path, e)) from e
        return cls(model, source=str(name_or_path))

    def forward(self, text_bert: Tensor) -> Tuple[Tensor, Tensor]:
        """``text_bert [B, 3, L]`` (ids, attention mask, segment ids) -> ``(states [B, L, H], mask [B, L] bool)``."""
        if not isinstance(text_bert, Tensor) or text_bert.dim() != 3 or text_bert.shape[1] != 3:
            shape = tuple(text_bert.shape) if isinstance(text_bert, Tensor) else type(text_bert).__name__
            raise ValueError(f"text_bert must be [B, 3, L] (token ids, attention mask, segment ids), got {shape}")
        if text_bert.dtype.is_floating_point:
            text_bert = text_bert.round()
        tb = text_bert.long()
        ids, att, seg = tb[:, 0], tb[:, 1], tb[:, 2]
        vocab = self.bert.config.vocab_size
        if bool((ids < 0).any() or (ids >= vocab).any()):
            raise ValueError(f"text_bert holds token ids outside BERT's vocabulary [0, {vocab}); the file's tokens were "
                             f"made for another tokenizer than {self.source!r}")
        out = self.bert(input_ids=ids, attention_mask=att, token_type_ids=seg)
        return out.last_hidden_state, att.bool()


def _missing_message(name_or_path, why) -> str:
    first = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
    return (f"could not load the BERT weights {str(name_or_path)!r} ({first}). They are downloaded from the Hugging "
            "Face hub on first use and cached (HF_HOME): connect once, or pass --bert with a local folder that holds "
            "them, or train on the frozen features with --text frozen")


def _offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    if any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in
           ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else getattr(constants, "HF_HUB_OFFLINE", False))


def _hub_unreachable(timeout: float = 10.0):
    """None when the hub answers one request within ``timeout`` s, else why not (any HTTP status
    counts as an answer: only a network that is not there is caught here)."""
    try:
        from huggingface_hub import constants
        endpoint = getattr(constants, "ENDPOINT", None) or "https://huggingface.co"
    except ImportError:
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"the Hugging Face hub at {endpoint} did not answer: {getattr(e, 'reason', e)}"


def _from_cache_or_hub(tf, name: str):
    """The cached copy of ``name`` (no network); else, only when the hub answers, a download."""
    try:
        return tf.BertModel.from_pretrained(name, add_pooling_layer=False, local_files_only=True)
    except (OSError, ValueError) as cached_error:
        if _offline():
            raise OSError(f"not in the local cache and HF_HUB_OFFLINE is set ({str(cached_error).splitlines()[0]})") \
                from None
    why = _hub_unreachable()
    if why is not None:
        raise OSError(f"not in the local cache, and {why}")
    return tf.BertModel.from_pretrained(name, add_pooling_layer=False)


def resolve_text_mode(mode: str, has_text_bert: bool, synthetic: bool) -> str:
    """``"auto"`` -> ``"finetune"`` for real data that has ``text_bert``, else ``"frozen"`` (the
    SYNTHETIC testbed's token ids are random: there is nothing for BERT to read in them)."""
    if mode not in TEXT_MODES:
        raise ValueError(f"text must be one of {TEXT_MODES}, got {mode!r}")
    if mode == "finetune" and not has_text_bert:
        raise ValueError("--text finetune needs the data's 'text_bert' field (BERT token ids), which this data does "
                         "not have (MulT-layout files carry only features); use --text frozen")
    if mode == "auto":
        return "finetune" if has_text_bert and not synthetic else "frozen"
    return mode


def split_bert_groups(groups: List[Dict], bert: nn.Module, lr: float, weight_decay: float) -> List[Dict]:
    """Take BERT's parameters out of the host's optimiser ``groups`` and give them two groups of
    their own at ``lr``: weight decay ``weight_decay`` except biases and LayerNorm (none)."""
    ids = {id(p) for p in bert.parameters()}
    out = []
    for g in groups:
        ps = [p for p in g["params"] if id(p) not in ids]
        if ps:
            out.append({**g, "params": ps})
    decay, no_decay = [], []
    for n, p in bert.named_parameters():
        if p.requires_grad:
            (no_decay if any(n.endswith(k) for k in _NO_DECAY) else decay).append(p)
    out.append({"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "bert"})
    out.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "bert_no_decay"})
    return out


def has_text_bert(ds) -> bool:
    """True when every split of ``ds`` carries ``text_bert``."""
    return all(getattr(ds[s], "text_bert", None) is not None for s in ("train", "valid", "test"))


__all__ = ["BertText", "DEFAULT_BERT", "TEXT_MODES", "resolve_text_mode", "split_bert_groups", "has_text_bert"]
