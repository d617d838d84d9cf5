"""Sinkhorn from scratch, as chapter 4 writes it: the scaling form in numpy and the log domain in
torch. The chapter shows these functions and checks them against :func:`infoenh.ot.sinkhorn`;
``tests/test_from_scratch.py`` checks the same on random problems.

Both follow POT's order (the ``v`` update, then the ``u`` update) from POT's start
``u = 1/n``, so after the same number of iterations they give the package's plan.
"""
import numpy as np
import torch


def sinkhorn_numpy(a, b, C, reg, n_iter):
    """Scaling-form Sinkhorn: (plan [n, m], column-marginal error of each step)."""
    K = np.exp(-C / reg)  # Gibbs kernel
    u = np.full(len(a), 1 / len(a), dtype=C.dtype)
    errors = []
    for _ in range(n_iter):
        v = b / (K.T @ u)
        u = a / (K @ v)
        # column-marginal error (the rows are exact after the u update)
        errors.append(np.linalg.norm(v * (K.T @ u) - b))
    return u[:, None] * K * v[None, :], np.array(errors)


def sinkhorn_log(C, reg, n_iter, a=None, b=None):
    """Log-domain Sinkhorn on C [..., n, m] -> (plan, phi [..., n], psi [..., m])."""
    n, m = C.shape[-2:]
    if a is None:                                    # uniform marginals
        a = torch.full(C.shape[:-1], 1 / n, dtype=C.dtype)
    if b is None:
        b = torch.full(C.shape[:-2] + (m,), 1 / m, dtype=C.dtype)
    log_a, log_b = a.log(), b.log()
    S = -C / reg                                     # log of the Gibbs kernel
    phi = torch.full_like(log_a, -np.log(n))        # POT's start, u = 1/n
    for _ in range(n_iter):
        psi = log_b - torch.logsumexp(phi[..., :, None] + S, dim=-2)
        phi = log_a - torch.logsumexp(psi[..., None, :] + S, dim=-1)
    return torch.exp(phi[..., :, None] + S + psi[..., None, :]), phi, psi
