"""GA hyperparameters, with the paper's defaults.

Defaults follow Table 1 of Schönberger et al., "Finding Strong Lottery Ticket Networks with
Genetic Algorithms" (arXiv 2411.04658) and its extended version (arXiv 2508.08877).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from evoprune.errors import EvopruneError

if TYPE_CHECKING:
    from evoprune.local.config import LocalConfig

VARIANTS = ("ga", "ga-adaptive", "memetic", "local")
# When post-pruning may clear a bit (see `evoprune.ga.prune`); "accuracy" is the paper's.
POST_PRUNE_CRITERIA = ("accuracy", "accuracy-loss", "no-new-errors", "holdout")
# "accuracy-loss": a rise of the mean cross-entropy below this, per sample, is rounding
LOSS_SLACK = 1e-6
# LocalConfig's names for GAConfig's fields, so its messages name the field the user set.
_LOCAL_NAMES = {"start_density": "local_density", "starts": "local_starts",
                "patience": "local_patience"}  # fmt: skip

# The variants that read a field, where not all of them do: a job that sets a field its variant
# does not read is refused (`evoprune.ga.job.check_variant_keys`), not silently ignored.
GA_FIELDS = ("population", "init_density", "rec_rate", "par_rate", "mut_rate", "mig_rate",
             "min_generations", "patience", "max_generations")  # fmt: skip
READ_BY = {
    **dict.fromkeys(GA_FIELDS, ("ga", "ga-adaptive", "memetic")),  # memetic's GA phase
    **dict.fromkeys(("adaptive_bound", "adaptive_step", "adaptive_decay"), ("ga-adaptive",)),
    # memetic and local remove weights in their search: no post-pruning
    **dict.fromkeys(("post_prune", "post_prune_criterion"), ("ga", "ga-adaptive")),
    **dict.fromkeys(
        (
            "ranking",
            "sparsity_penalty",
            "kicks",
            "kick_bits",
            "max_passes",
            "val_fraction",
            "local_patience",
            "min_gain",
            "tiebreak",
            "temperature",
            "exact_top",
        ),
        ("memetic", "local"),
    ),  # fmt: skip
    # memetic starts from the GA's elites, not from random masks
    **dict.fromkeys(("local_density", "local_starts", "fixed_sparsity"), ("local",)),
    **dict.fromkeys(("memetic_generations", "memetic_elites", "loss_first"), ("memetic",)),
}
# What the conv net's local search reads of the local fields (evoprune.local.conv)
CONV_LOCAL_FIELDS = ("local_density", "max_passes", "temperature")


def conv_reads(key: str, value: Any) -> bool:
    """Whether the conv net's local search reads local setting `key` at `value`: its own three,
    and ranking "none" (exact scores only, what it does anyway)."""
    return key in CONV_LOCAL_FIELDS or (key, value) == ("ranking", "none")


# What `GAConfig._check_types` asks of a field, by its annotation.
_EXPECTED = {"int": "an integer", "float": "a finite number", "bool": "true or false",
             "str": "a string"}  # fmt: skip


@dataclass(frozen=True)
class GAConfig:
    # "ga" (the paper's GA), "ga-adaptive" (its adaptive accuracy bound, "GA (adaptive AB)"),
    # "memetic" (the GA, then exact local search: evoprune.ga.memetic) or "local" (alone)
    variant: str = "ga"
    population: int = 100  # N (Table 1)
    init_density: float = 0.5  # P(bit = 1) for initial individuals and migrants
    rec_rate: float = 0.3  # P(an individual becomes a first parent) (Table 1)
    par_rate: float = 0.3  # mates come from the top floor(N * par_rate) (Table 1)
    mut_rate: float = 0.1  # P(an individual yields a one-bit mutant) (Table 1)
    mig_rate: float = 0.1  # floor(N * mig_rate) random migrants per generation (Table 1)
    min_generations: int = 100  # never stop before this many generations (paper)
    patience: int = 50  # stop when the best has not improved for this many generations (paper)
    max_generations: int | None = None  # None: 200 for ga-adaptive (paper), 1000 for ga
    # Adaptive accuracy bound (ga-adaptive): initial individuals must reach `adaptive_bound`
    # training accuracy. The paper lowers the bound on a wall-clock schedule; we lower it after
    # every `adaptive_step` candidate evaluations without N passing, by the factor
    # `adaptive_decay` on its distance to chance level, so a seed fixes the population.
    adaptive_bound: float = 0.85
    adaptive_step: int = 1000
    adaptive_decay: float = 0.5
    post_prune: bool = True  # post-evolutionary pruning of the final best mask (paper)
    # When post-pruning may drop a weight. "accuracy" is the paper's (training accuracy must not
    # drop); the default also keeps the training cross-entropy from rising: on digits (B, loss
    # objective, seeds 0-4) the paper's criterion cost 0.7-2.7 test points, this one none
    # (benchmarks/bench_post_prune.py). The paper-reproduction specs pin "accuracy".
    post_prune_criterion: str = "accuracy-loss"
    seed: int = 0
    memory_mb: float = 64.0  # bound on one activation tensor during evaluation
    device: str = "cpu"
    # memetic / local (evoprune.ga.memetic, evoprune.local.search); unused by ga, ga-adaptive
    ranking: str = "expansion"  # order flips by the softmax expansion, or "none" (exact only)
    sparsity_penalty: float | None = None  # objective + penalty * density; None: 0.1 for
    # memetic with the loss or the tie-breaker (sparsity >= 60% on digits-10 B), else 0
    local_density: float = 0.5  # density of local's random starts (the paper's, edge-popup's)
    local_starts: int = 1  # random starts of `local`
    kicks: int | None = None  # iterated local search kicks; None: memetic 5 (loss) or 4, local 0
    kick_bits: int = 16  # bits flipped per kick
    max_passes: int = 50  # passes per descent
    val_fraction: float = 0.0  # held-out training slice for early stopping (local search)
    local_patience: int = 2  # passes without a better validation accuracy before stopping
    # a descent ends after a pass that lowers the objective by less; None: 1e-3 for the loss, 0
    # for accuracy and F1
    min_gain: float | None = None
    fixed_sparsity: float | None = None  # swap moves at exactly this sparsity per layer
    # the memetic variant's GA phase: generation cap; None: the GA's own stopping rule, but at
    # most 50 generations for the loss (a continuous objective: its best improves a little
    # every generation, so the paper's rule only stops at the 1000-generation cap)
    memetic_generations: int | None = None
    memetic_elites: int = 1  # distinct best individuals the local search starts from
    # accuracy / F1 objectives: the local search breaks ties by the cross-entropy (see
    # evoprune.local.incremental); False: the objective alone
    tiebreak: bool = True
    # memetic with accuracy / F1: the GA phase and a first local search on the cross-entropy,
    # then the local search on the objective (better on circles, worse on moons: see
    # evoprune.ga.memetic)
    loss_first: bool = False
    temperature: float = 1.0  # the local search's cross-entropy is of logits / temperature
    exact_top: int = 0  # expansion ranking: re-score each unit's best N flips exactly (0: off)

    def __post_init__(self) -> None:
        self._check_types()
        if self.variant not in VARIANTS:
            raise EvopruneError(
                f"variant: expected one of {', '.join(VARIANTS)}, got {self.variant!r}"
            )
        try:  # the local search's fields, checked for every variant (a typo is never harmless)
            self.local_config("loss")
        except EvopruneError as exc:  # LocalConfig names some fields differently
            name, colon, rest = str(exc).partition(":")
            raise EvopruneError(f"{_LOCAL_NAMES.get(name, name)}{colon}{rest}") from None
        if self.memetic_generations is not None and self.memetic_generations < 1:
            raise EvopruneError(
                f"memetic_generations: expected a positive integer or None, "
                f"got {self.memetic_generations}"
            )
        if self.fixed_sparsity is not None and self.variant == "memetic":
            raise EvopruneError(
                "fixed_sparsity: only with variant 'local' (the memetic search starts from the "
                "GA's elites, whose sparsity is their own)"
            )
        if self.memetic_elites < 1:
            raise EvopruneError(
                f"memetic_elites: expected a positive integer, got {self.memetic_elites}"
            )
        from evoprune.devices import check_device

        check_device(self.device)
        if self.post_prune_criterion not in POST_PRUNE_CRITERIA:
            raise EvopruneError(
                f"post_prune_criterion: expected one of {', '.join(POST_PRUNE_CRITERIA)}, "
                f"got {self.post_prune_criterion!r}"
            )
        for name in (
            "init_density",
            "rec_rate",
            "par_rate",
            "mut_rate",
            "mig_rate",
            "adaptive_bound",
            "adaptive_decay",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise EvopruneError(f"{name}: expected a rate in [0, 1], got {value}")
        if self.population < 2:
            raise EvopruneError(f"population: expected at least 2, got {self.population}")
        if int(self.population * self.par_rate) < 1 and self.rec_rate > 0:
            raise EvopruneError("par_rate: population * par_rate must allow at least one mate")
        for name in ("min_generations", "patience", "adaptive_step"):
            if getattr(self, name) < 1:
                raise EvopruneError(
                    f"{name}: expected a positive integer, got {getattr(self, name)}"
                )
        if self.max_generations is not None and self.max_generations < 1:
            raise EvopruneError(
                f"max_generations: expected a positive integer, got {self.max_generations}"
            )
        if not self.memory_mb > 0:
            raise EvopruneError(f"memory_mb: expected a positive number, got {self.memory_mb}")

    def _check_types(self) -> None:
        """Every field holds its annotated type: int (numpy integers become int; bool is not
        one), float (any finite real), bool or str; ``| None`` fields may be None."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind, optional = str(f.type).removesuffix(" | None"), str(f.type).endswith("| None")
            if value is None and optional:
                continue
            expected = _EXPECTED.get(kind)
            if expected is None:  # a field of another type checks itself below
                continue
            if kind == "int":
                ok = isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
                if ok and not isinstance(value, int):
                    object.__setattr__(self, f.name, int(value))  # np.int64 -> int (JSON-able)
            elif kind == "float":
                ok = (
                    isinstance(value, numbers.Real)
                    and not isinstance(value, bool | np.bool_)
                    and math.isfinite(value)
                )
                if ok and isinstance(value, np.generic):  # np.float32 -> float: a checkpoint's
                    object.__setattr__(self, f.name, value.item())  # header reads back equal
            elif kind == "bool":
                ok = isinstance(value, bool | np.bool_)
                if ok:
                    object.__setattr__(self, f.name, bool(value))
            else:
                ok = isinstance(value, str)
            if not ok:
                expected += " or None" if optional else ""
                raise EvopruneError(f"{f.name}: expected {expected}, got {value!r}")

    def local_config(self, objective: str) -> LocalConfig:
        """The local search settings this config describes (memetic and local)."""
        from evoprune.local.config import LocalConfig

        penalty = self.sparsity_penalty
        if penalty is None:  # the loss alone never trades a little loss for sparsity (memetic);
            # with the tie-breaker the penalty sits beside the loss, below the accuracy
            on_loss = objective == "loss" or self.tiebreak
            penalty = 0.1 if on_loss and self.variant == "memetic" else 0.0
        kicks = self.kicks
        if kicks is None:  # see evoprune.ga.memetic: with accuracy / F1 four kicks keep
            # the memetic search within 2x the GA's time on moons; the loss on digits needs five
            kicks = 0 if self.variant != "memetic" else 5 if objective == "loss" else 4
        return LocalConfig(
            ranking=self.ranking,
            sparsity_penalty=penalty,
            start_density=self.local_density,
            starts=self.local_starts,
            kicks=kicks,
            kick_bits=self.kick_bits,
            max_passes=self.max_passes,
            val_fraction=self.val_fraction,
            patience=self.local_patience,
            min_gain=self.min_gain,
            fixed_sparsity=self.fixed_sparsity,
            tiebreak=self.tiebreak,
            temperature=self.temperature,
            exact_top=self.exact_top,
            seed=self.seed,
        )

    @property
    def generation_cap(self) -> int:
        if self.max_generations is not None:
            return self.max_generations
        return 200 if self.variant == "ga-adaptive" else 1000

    @property
    def n_parents(self) -> int:
        return int(self.population * self.par_rate)

    @property
    def n_migrants(self) -> int:
        return int(self.population * self.mig_rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EvopruneError(f"GA config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)
