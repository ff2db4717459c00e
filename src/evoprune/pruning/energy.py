"""Energy compensation: adjust the surviving weights (and biases) of a pruned network.

``none``      the masked weights as they are.
``l2_row``    each unit's surviving weights scaled by ``||w_j|| / ||m_j . w_j||`` (capped at 10).
``l2_layer``  the same with one factor per layer.
``activation`` data-aware rescaling: each unit's weights and bias scaled so that its
              pre-activation on a calibration batch has the dense network's L2 norm (capped).
``affine``    each unit's pre-activation matched in mean and std to the dense one on the
              calibration batch (weights scaled, bias shifted).
``lsq``       closed-form least squares: layer by layer, each unit's surviving weights and bias
              re-fitted so that its pre-activation on the calibration batch reproduces the
              *dense* network's, the inputs being the already compensated layers' activations.
              Ridge ``lam = 1e-3 tr(Cov X) / d_in`` on the weights, towards the dense weights by
              default (``lsq_prior="dense"``: nothing pruned -> exactly the dense network) or
              towards zero (``"zero"``); the bias is not regularised; a unit with no surviving
              weight gets the mean target as its bias.

The data-aware ones (activation, affine, lsq) go through the layers in order, so each layer
compensates for what the layers below it lost. All arithmetic in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evoprune.errors import EvopruneError
from evoprune.pruning.dense import Net

EC_METHODS = ("none", "l2_row", "l2_layer", "activation", "affine", "lsq")
DATA_AWARE = ("activation", "affine", "lsq")
CAP = 10.0  # largest rescaling factor


def compensate(
    net: Net,
    masks: Sequence[torch.Tensor],
    ec: str,
    X: torch.Tensor | None = None,
    ridge: float = 1e-3,
    lsq_prior: str = "dense",
) -> Net:
    """The pruned network ``net * masks`` with energy compensation `ec` (float32 out).

    `X` ``(n, in)`` is the calibration batch for the data-aware methods.

    >>> # compensate(net, masks, "lsq", split.X_train)
    """
    if ec not in EC_METHODS:
        raise EvopruneError(f"ec: expected one of {', '.join(EC_METHODS)}, got {ec!r}")
    if lsq_prior not in ("dense", "zero"):
        raise EvopruneError(f"lsq_prior: expected dense or zero, got {lsq_prior!r}")
    ws = [w.detach().double() for w in net.weights]
    bs = [b.detach().double() for b in net.biases]
    ms = [m.to(torch.float64) for m in masks]
    if ec == "none":
        return _out([w * m for w, m in zip(ws, ms, strict=True)], bs)
    if ec in ("l2_row", "l2_layer"):
        new = []
        for w, m in zip(ws, ms, strict=True):
            dims = 1 if ec == "l2_row" else (0, 1)
            full = w.norm(dim=dims, keepdim=True)
            kept = (w * m).norm(dim=dims, keepdim=True)
            alpha = torch.where(kept > 0, (full / kept.clamp(min=1e-300)).clamp(max=CAP), 1.0)
            new.append(w * m * alpha)
        return _out(new, bs)
    if X is None:
        raise EvopruneError(f"ec {ec}: needs a calibration batch")
    return Compensator(net, X, ridge, lsq_prior)(masks, ec)


class Compensator:
    """The data-aware compensations of one network on one calibration batch, with the dense
    network's layer inputs and pre-activations computed once (CMA-ES calls it per genome).

    >>> # comp = Compensator(net, X); comp(masks, "lsq")
    """

    def __init__(self, net: Net, X: torch.Tensor, ridge: float = 1e-3, lsq_prior: str = "dense"):
        self.ws = [w.detach().double() for w in net.weights]
        self.bs = [b.detach().double() for b in net.biases]
        self.ridge, self.prior = ridge, lsq_prior
        h = X.detach().double().reshape(len(X), -1)
        self.inputs, self.targets = [], []  # dense layer inputs (n, in) and pre-activations
        for i, (w, b) in enumerate(zip(self.ws, self.bs, strict=True)):
            self.inputs.append(h)
            z = h @ w.T + b
            self.targets.append(z)
            h = torch.relu(z) if i < len(self.ws) - 1 else z
        self.means = [t.mean(0) for t in self.targets]
        self.centred = [t - m for t, m in zip(self.targets, self.means, strict=True)]
        self.logits: torch.Tensor | None = None  # the last call's output on the batch (n, C)
        self._first: tuple[torch.Tensor, ...] | None = None  # layer 1's centred inputs, lam

    def __call__(self, masks: Sequence[torch.Tensor], ec: str = "lsq") -> Net:
        h = self.inputs[0]
        new_w, new_b = [], []
        last = len(self.ws) - 1
        for i, (w, b, m) in enumerate(zip(self.ws, self.bs, masks, strict=True)):
            target = self.targets[i]  # (n, out) the dense network's pre-activation
            m = m.to(torch.float64)
            if ec == "lsq":
                w2, b2 = _lsq_layer(h, self.centred[i], self.means[i], w, m, self.ridge, self.prior)
            else:
                pre = h @ (w * m).T + b
                if ec == "activation":
                    alpha = _ratio(target.norm(dim=0), pre.norm(dim=0))
                    w2, b2 = w * m * alpha[:, None], b * alpha
                else:  # affine
                    alpha = _ratio(target.std(dim=0), pre.std(dim=0))
                    w2 = w * m * alpha[:, None]
                    b2 = alpha * (b - pre.mean(0)) + target.mean(0)
            new_w.append(w2)
            new_b.append(b2)
            h = h @ w2.T + b2
            if i < last:
                h = torch.relu(h)
        self.logits = h
        return _out(new_w, new_b)

    def lsq_logits(self, masks: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """The batch's network outputs ``(P, n, C)`` after the ``lsq`` compensation of each of
        `P` genomes' masks, one batched pass per layer for the whole population. Equals
        ``self(m, "lsq")`` then ``self.logits`` per genome up to float rounding (tested).

        No Gram matrix is formed: each unit's ridge system is built from its own few kept input
        columns and its refitted pre-activation is those columns times the solution, for all
        units of all genomes in a few batched calls (``_lsq_units``). Activations stay
        unit-major ``(P, units, n)``; the first layer's centred inputs are computed once.

        >>> # comp.lsq_logits([masks_a, masks_b]).shape  # (2, n, C)
        """
        P, last = len(masks), len(self.ws) - 1
        h = torch.empty(0)  # (P, units + 1, n) the layer's output, unit-major, zero pad row last
        for i, w in enumerate(self.ws):
            keep = torch.stack([m[i] for m in masks]).to(torch.bool)  # (P, out, in)
            if i == 0:
                if self._first is None:
                    X = self.inputs[0]
                    X = torch.cat([X.T, X.new_zeros(1, len(X))])[None]  # (1, in + 1, n)
                    self._first = _centred(X, self.ridge)
                Xt, lam = (t.expand(P, *t.shape[1:]) for t in self._first)
            else:
                Xt, lam = _centred(h, self.ridge)
            h = _lsq_units(Xt, lam, self.centred[i], self.means[i], w, keep, self.prior)
            if i < last:
                h = torch.relu_(h)
        return h[:, :-1].transpose(1, 2)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, (num / den.clamp(min=1e-300)).clamp(max=CAP), 1.0)


def _lsq_layer(
    X: torch.Tensor,
    Tc: torch.Tensor,
    tm: torch.Tensor,
    W: torch.Tensor,
    M: torch.Tensor,
    ridge: float,
    prior: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge least squares per unit over its surviving inputs: inputs ``X (n, in)``, centred
    targets ``Tc (n, out)`` with means ``tm (out,)``; returns the new ``(out, in)`` weights and bias."""
    n, d_in = X.shape
    keep = M > 0  # (out, in)
    W_new = torch.zeros_like(W)
    rows = torch.nonzero(keep.any(1)).squeeze(1)  # units with a surviving weight
    if rows.numel() == 0:
        return W_new, tm.clone()
    mu = X.mean(0)
    lam = ridge * (float((X * X).sum()) / n - float(mu @ mu)) / d_in  # ridge * tr(Cov X) / d_in
    lam = lam if lam > 0 else 1e-12
    # only the inputs some unit keeps enter a solve: at high sparsity a small fraction of them
    used = torch.nonzero(keep.any(0)).squeeze(1)
    Xu = X[:, used] - mu[used]
    C = Xu.T @ Xu / n  # (u, u)
    Cxt = Xu.T @ Tc[:, rows] / n  # (u, r)
    Wr, kr = W[rows][:, used], keep[rows][:, used]  # (r, u)
    K = int(kr.sum(1).max())
    # each unit's surviving inputs first, padded to K with switched-off pads
    order = torch.argsort((~kr).to(torch.int8), dim=1, stable=True)[:, :K]  # (r, K)
    vf = torch.gather(kr, 1, order).double()  # (r, K) 1 = a real input
    G = C[order[:, :, None], order[:, None, :]] * vf[:, :, None] * vf[:, None, :]
    G = G + torch.diag_embed(lam * vf + (1.0 - vf))  # pads: identity rows, zero rhs
    rhs = Cxt.T.gather(1, order) * vf  # (r, K)
    if prior == "dense":
        rhs = rhs + lam * Wr.gather(1, order) * vf
    sol = torch.linalg.solve(G, rhs.unsqueeze(-1)).squeeze(-1) * vf  # (r, K)
    W_new[rows[:, None], used[None, :]] = torch.zeros_like(Wr).scatter_(1, order, sol) * kr
    return W_new, tm - W_new @ mu


def _centred(h: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-major layer inputs ``h (P, in + 1, n)`` whose last row is the zero pad: centred
    (the pad stays zero) and ``_lsq_layer``'s ridge ``lam (P,)``."""
    d_in, n = h.shape[1] - 1, h.shape[2]
    mu = h.mean(-1, keepdim=True)  # (P, in + 1, 1)
    lam = ridge * ((h * h).sum((-2, -1)) / n - (mu * mu).sum((-2, -1))) / d_in
    return h - mu, torch.where(lam > 0, lam, torch.full_like(lam, 1e-12))


def _lsq_units(
    Xt: torch.Tensor,
    lam: torch.Tensor,
    Tc: torch.Tensor,
    tm: torch.Tensor,
    W: torch.Tensor,
    keep: torch.Tensor,
    prior: str,
) -> torch.Tensor:
    """``_lsq_layer`` for `P` genomes at once, returning the refitted pre-activations ``(P, out
    + 1, n)`` (unit-major, a zero pad row last): centred inputs ``Xt (P, in + 1, n)`` with the
    zero pad row last, ridges ``lam (P,)``, centred dense targets ``Tc (n, out)`` with means
    ``tm (out,)``, dense weights ``W (out, in)``, masks ``keep (P, out, in)``. A unit with no
    kept input outputs its mean target."""
    P, out, d_in = keep.shape
    n = Xt.shape[-1]
    z = torch.zeros(P, out + 1, n, dtype=Xt.dtype)  # each unit's centred pre-activation
    z[:, :out] = tm[:, None]
    counts = keep.sum(-1)  # (P, out)
    p, j = torch.nonzero(counts, as_tuple=True)  # the r units with a kept input
    if p.numel() == 0:
        return z
    c = counts[p, j]  # (r,)
    kr = keep[p, j]  # (r, in)
    # each unit's kept inputs first (ascending), then the rest
    order = torch.argsort((~kr).to(torch.int8), dim=1, stable=True)[:, : int(c.max())]  # (r, K)
    lr = lam[p]  # (r,)
    # units in buckets of kept counts (top / 2, top], padded to top with the zero row: little
    # padding waste, a handful of batched calls per layer
    top, K = 1, order.shape[1]
    while top < 2 * K:
        sel = torch.nonzero((c > top // 2) & (c <= top)).squeeze(1)
        width = min(top, K)
        top *= 2
        if sel.numel() == 0:
            continue
        o = order[sel, :width]  # (s, b)
        vf = kr[sel].gather(1, o)  # (s, b) True = a real input
        Xk = Xt[p[sel, None], torch.where(vf, o, d_in)]  # (s, b, n) pads: the zero row
        ls = lr[sel, None]  # (s, 1)
        G = Xk @ Xk.transpose(1, 2) / n + torch.diag_embed(torch.where(vf, ls, 1.0))
        rhs = (Xk @ Tc.T[j[sel]].unsqueeze(-1)).squeeze(-1) / n  # (s, b); pads 0
        if prior == "dense":
            rhs = rhs + ls * W[j[sel, None], o] * vf
        sol = torch.linalg.solve(G, rhs.unsqueeze(-1))  # (s, b, 1); pads 0
        z[p[sel], j[sel]] += (sol.transpose(1, 2) @ Xk).squeeze(1)
    return z


def _out(ws: list[torch.Tensor], bs: list[torch.Tensor]) -> Net:
    return Net(tuple(w.float() for w in ws), tuple(b.float() for b in bs))
