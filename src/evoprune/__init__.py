"""evoprune: strong lottery tickets by evolutionary search.

>>> import evoprune
>>> sorted(evoprune.DATASETS)[:2]
['blobs', 'circles']
"""

__version__ = "0.1.0"

from evoprune.data import DATASETS, load_dataset, load_file  # noqa: E402
from evoprune.errors import EvopruneError  # noqa: E402
from evoprune.evaluate import Evaluator  # noqa: E402
from evoprune.ga import GAConfig, search  # noqa: E402
from evoprune.masks import MaskSpace  # noqa: E402
from evoprune.nets import ARCHS, build_mlp  # noqa: E402
from evoprune.ticket import Ticket  # noqa: E402

__all__ = [
    "ARCHS",
    "DATASETS",
    "Evaluator",
    "EvopruneError",
    "GAConfig",
    "MaskSpace",
    "Ticket",
    "build_mlp",
    "load_dataset",
    "load_file",
    "search",
]
