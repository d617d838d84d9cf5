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
        """Pretrained weights from the Hugging Face hub (cached under ``HF_HOME``) or a local folder
        written by ``save_pretrained``. A clear error when they cannot be had."""
        tf = _transformers()
        try:
            model = tf.BertModel.from_pretrained(name_or_path, add_pooling_layer=False)
        except (OSError, ValueError) as e:
            raise OSError(
                f"could not load the BERT weights {name_or_path!r} ({str(e).splitlines()[0]}). They are downloaded "
                "from the Hugging Face hub on first use and cached (HF_HOME): connect once, or pass --bert with "
                "a local folder that holds them, or train on the frozen features with --text frozen") from e
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
