"""Datasets: a registry of the paper's data plus the user's own CSV/NPZ files.

>>> from evoprune.data import load_dataset
>>> ds = load_dataset("moons")
>>> ds.X_train.shape, ds.n_classes
(torch.Size([50000, 2]), 2)
"""

from evoprune.data.bayes import bayes_predict
from evoprune.data.registry import DATASETS, Dataset, fresh_sample, load_dataset, load_file

__all__ = ["DATASETS", "Dataset", "bayes_predict", "fresh_sample", "load_dataset", "load_file"]
