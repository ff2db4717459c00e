"""The genetic algorithm for strong lottery tickets (Schönberger et al., arXiv 2411.04658,
2508.08877): configuration, operators, the search loop, post-pruning, and `search`.
"""

from evoprune.ga.api import search
from evoprune.ga.config import GAConfig
from evoprune.ga.prune import post_prune
from evoprune.ga.search import GeneticSearch
from evoprune.ga.state import GAState

__all__ = ["GAConfig", "GAState", "GeneticSearch", "post_prune", "search"]
