"""The baselines the paper compares the GA against.

- `edge_popup`: Ramanujan et al. 2020 (arXiv 1911.13299), scores trained by SGD through a
  straight-through top-k mask over the same frozen random network;
- `backprop`: an ordinary MLP trained by scikit-learn with the paper's Table 2 hyperparameters
  (`TABLE2`, `lookup`), and `tune_backprop`, the search that produced them.

>>> import torch
>>> from evoprune.nets import build_mlp
>>> res = edge_popup(build_mlp([2, 20, 2]), torch.randn(64, 2), torch.randint(0, 2, (64,)), epochs=1)
>>> res.mask.dtype
torch.bool
"""

from evoprune.baselines.backprop import BackpropResult, TuneResult, backprop, tune_backprop
from evoprune.baselines.edge_popup import (
    EdgePopupConfig,
    EdgePopupResult,
    edge_popup,
    kept_count,
    train_edge_popup,
)
from evoprune.baselines.table2 import TABLE2, BackpropParams, lookup

__all__ = [
    "TABLE2",
    "BackpropParams",
    "BackpropResult",
    "EdgePopupConfig",
    "EdgePopupResult",
    "TuneResult",
    "backprop",
    "edge_popup",
    "kept_count",
    "lookup",
    "train_edge_popup",
    "tune_backprop",
]
