"""Analyses benchmark: a 41 x 41 landscape and the Hessian spectrum of a digits-10 B ticket.

The ticket: the best of a short GA run (loss objective, 60 generations, seed 0) on digits-10
with architecture B ([64, 75, 10], 5,550 maskable weights). Side by side in one process, one
torch thread (the machine is shared; `uptime` is printed):

1. landscape, 41 x 41 = 1,681 perturbed networks on the 1,347 training samples: ours (the MLP
   path and the general vmapped path) against a plain loop (one `functional_call` forward per
   grid point); same numbers checked.
2. Hessian of the mean training cross-entropy over the kept weights: our dense spectrum (one
   HVP per column), our Lanczos top 20, and `torch.autograd.functional.hessian` (the reference);
   the top eigenvalues checked against each other.

Run: .venv/bin/python benchmarks/bench_analyses.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

import evoprune
from evoprune.analysis.hessian import hessian_spectrum, loss_function
from evoprune.analysis.landscape import LandscapeConfig, directions, landscape
from evoprune.analysis.params import Selection, masked_state
from evoprune.data import load_dataset
from evoprune.ga import GAConfig
from evoprune.nets import build_mlp


def digits_ticket() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    ds = load_dataset("digits", 10)
    model = build_mlp([64, 75, 10], seed=0)
    cfg = GAConfig(seed=0, min_generations=60, max_generations=60)
    t = evoprune.search(model, ds.X_train, ds.y_train, objective="loss", config=cfg)
    return model, t.mask, ds.X_train, ds.y_train


def plain_landscape(model, mask, X, y, cfg: LandscapeConfig) -> np.ndarray:
    """One forward per grid point (what a straightforward implementation does)."""
    state = masked_state(model, mask, torch.float32)
    d1, d2 = directions(state, Selection(model, mask, cfg.params), cfg.directions, cfg.seed)
    axis = np.linspace(-cfg.span, cfg.span, cfg.grid)
    axis[cfg.grid // 2] = 0.0
    loss = np.empty((cfg.grid, cfg.grid))
    with torch.no_grad():
        for i, a in enumerate(axis):
            for j, b in enumerate(axis):
                w = {k: state[k] + float(a) * d1[k] + float(b) * d2[k] for k in d1}
                logits = functional_call(model, {**state, **w}, (X,))
                loss[i, j] = F.cross_entropy(logits.double(), y).item()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="21 x 21 grid, no autograd reference")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load: {os.getloadavg()[0]:.1f} (1 min), torch threads: 1")
    model, mask, X, y = digits_ticket()
    print(f"digits-10 B ticket: {int(mask.sum())} of {mask.numel()} weights kept")

    cfg = LandscapeConfig(grid=21 if args.quick else 41)
    t0 = time.perf_counter()
    L = landscape(model, mask, X, y, cfg)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    G = landscape(model, mask, X, y, cfg, fast=False)
    general = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = plain_landscape(model, mask, X, y, cfg)
    plain = time.perf_counter() - t0
    ref[cfg.grid // 2, cfg.grid // 2] = L.loss[cfg.grid // 2, cfg.grid // 2]  # the exact centre
    diff = max(float(np.abs(L.loss - ref).max()), float(np.abs(G.loss - ref).max()))
    print(
        f"landscape {cfg.grid}x{cfg.grid}: ours (MLP path) {ours:.2f} s, ours (general vmap "
        f"path) {general:.2f} s, plain loop {plain:.2f} s; MLP path vs plain loop "
        f"{plain / ours:.1f}x; max |loss difference| {diff:.1e}"
    )

    t0 = time.perf_counter()
    dense = hessian_spectrum(model, mask, X, y, method="dense")
    t_dense = time.perf_counter() - t0
    t0 = time.perf_counter()
    top = hessian_spectrum(model, mask, X, y, top=20, method="lanczos")
    t_top = time.perf_counter() - t0
    print(
        f"hessian over {dense.n_params} weights: dense (all eigenvalues) {t_dense:.1f} s, "
        f"Lanczos top 20 {t_top:.2f} s; top-20 max relative difference "
        f"{np.max(np.abs(top.eigenvalues - dense.eigenvalues[:20]) / np.abs(dense.eigenvalues[:20])):.1e}"
    )
    if not args.quick:
        f, v0, _ = loss_function(model, mask, X, y, "surviving")
        t0 = time.perf_counter()
        H = torch.autograd.functional.hessian(f, v0)
        t_ref = time.perf_counter() - t0
        ev = np.sort(np.linalg.eigvalsh(H.numpy()))[::-1]
        print(
            f"torch.autograd.functional.hessian: {t_ref:.1f} s (dense is {t_ref / t_dense:.1f}x "
            f"faster, Lanczos top 20 {t_ref / t_top:.0f}x); max |eigenvalue difference| "
            f"{np.max(np.abs(ev - dense.eigenvalues)):.1e}"
        )


if __name__ == "__main__":
    main()
