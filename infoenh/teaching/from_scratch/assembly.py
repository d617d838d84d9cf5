"""The InfoEnh module assembled from scratch, as chapter 6 writes it: each modality through its
FIB, the InfoNCE terms summed and weighted by alpha (eq. 6), then FIA on the filtered rows. It
reuses the weights of an :class:`infoenh.InfoEnh` (its ``fib`` layers) so that the chapter and
``tests/test_from_scratch.py`` can check that the package computes exactly this.
"""
import torch

from infoenh.fia import fia
from infoenh.infonce import sentiment_infonce


def infoenh_scratch(model, seqs, labels, masks=None):
    """seqs: modality -> [B, L, d_m]; labels [B]. Returns (modality -> [B, k, M*d], aux loss)."""
    z, rows, aux = {}, {}, 0.0
    for name in model.modalities:
        out = model.fib[name](seqs[name], None if masks is None else masks[name])
        z[name], rows[name] = out.z, out.mask                # [B, k, d], [B, k]
        nce = sentiment_infonce(out.e, out.z, labels, out.mask, tau=model.tau,
                                negatives=model.negatives)
        aux = aux + nce.loss
    aligned = fia(z, rows, reg=model.reg, max_iter=model.ot_iters, tol=model.ot_tol)
    return aligned.enhanced, model.alpha * aux
