"""The InfoEnh module assembled from scratch, as chapter 6 writes it: each modality through its
FIB, the InfoNCE terms summed and weighted by alpha (eq. 6), then FIA on the filtered rows. It
reuses the weights of an :class:`infoenh.InfoEnh` (its ``fib`` layers) so that the chapter and
``tests/test_from_scratch.py`` can check that the package computes exactly this.
"""
from infoenh.fia import fia
from infoenh.infonce import sentiment_infonce


def infoenh_scratch(model, seqs, labels, masks=None):
    """InfoEnh's forward pass from its parts, with the weights of `model`.
    seqs: modality -> [B, L_m, d_m]; labels [B]; masks: modality -> [B, L_m] or None.
    Returns (modality -> E'_m [B, k, M*d], the auxiliary loss alpha * sum_m L_m)."""
    z, rows, infonce = {}, {}, []
    for m in model.modalities:
        fib_m = model.fib[m](seqs[m], None if masks is None else masks[m])
        z[m], rows[m] = fib_m.z, fib_m.mask                      # [B, k, d], [B, k]
        nce = sentiment_infonce(fib_m.e, fib_m.z, labels, fib_m.mask, tau=model.tau,
                                negatives=model.negatives)
        infonce.append(nce.loss)                                 # L_m
    aligned = fia(z, rows, reg=model.reg, max_iter=model.ot_iters, tol=model.ot_tol)
    return aligned.enhanced, model.alpha * sum(infonce)
