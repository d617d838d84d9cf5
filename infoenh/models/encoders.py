"""Per-modality sequence encoders. Every encoder keeps the whole sequence ``[B, L, w]`` (the
originals of Self-MM and MISA keep only LSTM final states), so that InfoEnh can sit between the
encoders and the fusion; the hosts pool afterwards.

Recurrent encoders run in float32 even inside a CUDA autocast region: their hidden sizes are tiny
(5-32 units), so bf16 gains nothing there, and cuDNN's reduced-precision RNN support varies by
version.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def float32_region(x: Tensor):
    """Context that turns autocast off for ``x``'s device (a no-op when autocast is not active)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def left_align(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's real steps to the front, in time order: ``x [B, L, d]``, ``mask [B, L]`` ->
    ``(x_aligned [B, L, d], order [B, L])``.

    MMSA pads at the end (``order`` is then the identity); other files may pad at the front or
    leave holes. Recurrences run on the aligned rows, :func:`restore` puts their outputs back.
    """
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1])), order


def restore(y: Tensor, order: Tensor) -> Tensor:
    """Inverse of :func:`left_align` for per-step outputs ``y [B, L, w]``."""
    return torch.empty_like(y).scatter_(1, order.unsqueeze(-1).expand(-1, -1, y.shape[-1]), y)


def _lengths_on_cpu(mask: Tensor) -> tuple[Tensor, bool]:
    """``mask [B, L]`` -> (real steps per row on the CPU, int64, at least 1: an empty row is read
    as length 1 and masked later; whether every row is a prefix, real steps first), with ONE
    transfer from the device: packing needs the lengths on the CPU anyway."""
    n = mask.sum(dim=1)                                               # [B] int64
    hole = (mask[:, 1:] & ~mask[:, :-1]).any()                        # a real step after a padded one
    host = torch.cat([n, hole.reshape(1).to(n.dtype)]).to("cpu")
    return host[:-1].clamp_min(1), not bool(host[-1])


class StepMLP(nn.Module):
    """Per-step ``Linear -> ReLU -> Dropout``: ``[B, L, d_in] -> [B, L, hidden]``.

    The late-fusion baseline's encoder: cheap, order-free, enough for the synthetic testbed.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.out_dim = hidden
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.net(x)


class LSTMSeq(nn.Module):
    """Self-MM's audio/vision subnet, sequence version: unidirectional LSTM, dropout, then a linear
    map applied at every step: ``[B, L, d_in] -> [B, L, out]``.

    Self-MM keeps ``linear(dropout(h_n))`` of a packed LSTM. Here the real steps are first moved to
    the front (a no-op for MMSA's end-padded data), the LSTM runs unpacked, and the outputs are put
    back in place: being unidirectional, its output at the last real step is exactly Self-MM's
    vector, so ``last_valid`` pooling reproduces the original.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.out_dim = out_dim
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        order = None
        if mask is not None:
            x, order = left_align(x, mask)
        with float32_region(x):
            h, _ = self.rnn(x.float())
        h = h if order is None else restore(h, order)
        return self.linear(self.dropout(h))


class StackedBiLSTM(nn.Module):
    """MISA's audio/vision extractor: bi-LSTM, LayerNorm, second bi-LSTM, on packed sequences
    (real steps moved to the front first, so the padding may be anywhere).

    ``forward(x [B, L, d_in], mask [B, L]) -> (seq [B, L, 4h], utt [B, 4h])``: ``seq`` is the
    concatenation of both layers' outputs at every step (zero at padding); ``utt`` is MISA's
    utterance vector, the final states of both directions of both layers in MISA's order
    (layer-1 forward, layer-2 forward, layer-1 backward, layer-2 backward).
    MISA uses hidden size = input size (5 for COVAREP, 20 for Facet).

    ``mask`` decides which steps are read. MMSA's MISA packs audio and vision with the *text*
    lengths; :class:`~infoenh.models.misa.MISA` (``lengths="text"``) passes that prefix mask here.
    When every row's real steps already come first (MMSA's end padding, and those prefix masks),
    the reordering (:func:`left_align` / :func:`restore`) is the identity and is skipped, forward
    and backward; whether it is needed travels to the CPU with the lengths, in one transfer.
    """

    def __init__(self, in_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or in_dim
        self.hidden = hidden
        self.out_dim = 4 * hidden
        self.rnn1 = nn.LSTM(in_dim, hidden, bidirectional=True, batch_first=True)
        self.norm = nn.LayerNorm(2 * hidden)
        self.rnn2 = nn.LSTM(2 * hidden, hidden, bidirectional=True, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        B, L, _ = x.shape
        if mask is None:
            mask = torch.ones(B, L, dtype=torch.bool, device=x.device)
        lengths, prefix = _lengths_on_cpu(mask)
        # rows padded at the end (MMSA's files) are already aligned: no reordering there, nor in
        # the backward pass (the sequence outputs get a gradient when InfoEnh reads them)
        order = None
        if not prefix:
            x, order = left_align(x, mask)
        with float32_region(x):
            packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
            out1, (h1, _) = self.rnn1(packed)
            out1, _ = pad_packed_sequence(out1, batch_first=True, total_length=L)
            normed = self.norm(out1)
            packed2 = pack_padded_sequence(normed, lengths, batch_first=True, enforce_sorted=False)
            out2, (h2, _) = self.rnn2(packed2)
            out2, _ = pad_packed_sequence(out2, batch_first=True, total_length=L)
        seq = torch.cat([out1, out2], dim=-1)
        seq = (seq if order is None else restore(seq, order)) * mask.unsqueeze(-1).to(out1.dtype)
        # h1, h2: [2 directions, B, h] -> MISA's cat(dim=2).permute(1, 0, 2).view(B, -1)
        utt = torch.cat([h1, h2], dim=2).permute(1, 0, 2).reshape(B, -1)
        return seq, utt
