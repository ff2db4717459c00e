"""Small tabular CSV files from data bundled with scikit-learn (no download), for benchmarks.

`write_tabular(folder)` writes wine.csv, breast_cancer.csv and iris.csv (label column
``target``) and returns their paths; the files are made on the fly, not committed.
"""

from __future__ import annotations

from pathlib import Path

from sklearn import datasets as skd

LOADERS = {
    "wine": skd.load_wine,  # 178 rows, 13 features in units from 0.1 to 1,000, 3 classes
    "breast_cancer": skd.load_breast_cancer,  # 569 rows, 30 features, 2 classes
    "iris": skd.load_iris,  # 150 rows, 4 features, 3 classes
}


def write_tabular(folder: str | Path, names: tuple[str, ...] = tuple(LOADERS)) -> dict[str, Path]:
    """Write each named table as ``folder/NAME.csv``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        frame = LOADERS[name](as_frame=True).frame
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths
