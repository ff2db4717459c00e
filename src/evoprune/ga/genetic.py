"""The genetic algorithm for strong lottery tickets, exactly as published (except the adaptive
bound's schedule, which counts evaluations where the paper counts seconds: `GAConfig`).

Schönberger, Zorn, Nüßlein, Gabor, Altmann: "Finding Strong Lottery Ticket Networks with
Genetic Algorithms" (2024, arXiv 2411.04658) and "Towards Scalable Lottery Ticket Networks using
Genetic Algorithms" (2025, arXiv 2508.08877). A genome is one bit per maskable weight.

One generation (`step`):
  1. the population is ranked: performance first, sparsity (more zero bits) second;
  2. each individual becomes a first parent with probability rec_rate, its mate drawn
     uniformly from the top floor(N * par_rate); uniform crossover makes one child;
  3. each individual, new children included, yields with probability mut_rate a mutant with
     one random bit flipped;
  4. floor(N * mig_rate) random migrants join;
  5. parents, children, mutants and migrants compete; the top N by (performance, zero bits)
     survive.
Stop after at least `min_generations` once the best performance has not improved for `patience`
generations, or at the generation cap.

Everything random comes from one generator seeded by the run seed, whose state is saved in
checkpoints, so an interrupted and resumed search is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from evoprune.devices import torch_threads
from evoprune.evaluate import Evaluator
from evoprune.ga import operators as ops
from evoprune.ga.checkpoint import load_checkpoint, save_checkpoint
from evoprune.ga.config import GAConfig
from evoprune.ga.state import GAState
from evoprune.interrupts import sigterm_as_interrupt
from evoprune.masks import count_ones, sparsity
from evoprune.seeding import torch_generator


class GeneticSearch:
    """Runs the GA over one evaluator. `fingerprint` identifies the problem in checkpoints."""

    def __init__(
        self,
        evaluator: Evaluator,
        config: GAConfig,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 0,
        fingerprint: dict[str, Any] | None = None,
        progress: bool = False,
    ):
        self.ev = evaluator
        self.cfg = config
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.checkpoint_every = checkpoint_every
        self.before_resume_seconds = 0.0  # the evolution's seconds in the runs it resumes
        self.resumed_code: list[dict[str, Any]] = []  # the code of the runs it resumes
        self.fingerprint = {
            "config": config.to_dict(),
            "n_bits": evaluator.n_bits,
            "metrics": list(evaluator.metric_names),
            **(fingerprint or {}),
        }
        self.progress = progress
        self.rng = torch_generator(config.seed, "ga")
        self._acc = evaluator.metric_names.index("accuracy")
        self._obj = evaluator.metric_names.index(evaluator.objective.name)

    @property
    def chance(self) -> float:
        """Chance level, where the adaptive bound tends: one in the classes the labels hold
        (labels {3, 7} on an 8-output network: 1/2, not 1/8)."""
        return 1.0 / int(torch.unique(self.ev.y).numel())

    # -- scoring -----------------------------------------------------------------------------

    def _score(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        metrics = self.ev.evaluate(masks)
        scores = torch.stack([metrics[n] for n in self.ev.metric_names], dim=1)  # (P, m)
        return scores, self.ev.fitness(metrics)

    def _ranked(
        self, pop: torch.Tensor, scores: torch.Tensor, fitness: torch.Tensor, keep: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The best `keep` of a population: performance first, more zero bits second."""
        zeros = pop.shape[1] - count_ones(pop)
        order = ops.rank(fitness, zeros)[:keep]
        return pop[order], scores[order], fitness[order]

    # -- initial population --------------------------------------------------------------------

    def _initial_population(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        cfg, N, n_bits = self.cfg, self.cfg.population, self.ev.n_bits
        if cfg.variant == "ga":
            pop = ops.random_masks(N, n_bits, cfg.init_density, self.rng)
            scores, fitness = self._score(pop)
            return pop, scores, fitness, {}
        # Adaptive accuracy bound: candidates must reach `bound` training accuracy; the bound
        # moves toward chance after every `adaptive_step` evaluations without N passing.
        chance = self.chance
        bound, spent_at_level, spent = cfg.adaptive_bound, 0, 0
        kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        n_kept = 0
        while n_kept < N:
            batch = ops.random_masks(N, n_bits, cfg.init_density, self.rng)
            scores, fitness = self._score(batch)
            ok = scores[:, self._acc] >= bound
            kept.append((batch[ok], scores[ok], fitness[ok]))
            n_kept += int(ok.sum())
            spent_at_level += N
            spent += N
            if n_kept < N and spent_at_level >= cfg.adaptive_step:
                gap = (bound - chance) * cfg.adaptive_decay
                bound = chance + gap if gap > 1e-3 else 0.0  # the floor admits everyone
                spent_at_level = 0
        pop, scores, fitness = (torch.cat([k[i] for k in kept])[:N] for i in range(3))
        return pop, scores, fitness, {"adaptive_final_bound": bound, "adaptive_candidates": spent}

    def initial_state(self) -> GAState:
        start = time.perf_counter()
        pop, scores, fitness, info = self._initial_population()
        pop, scores, fitness = self._ranked(pop, scores, fitness, self.cfg.population)
        state = GAState(
            population=pop,
            scores=scores,
            fitness=fitness,
            rng_state=self.rng.get_state(),
            best_fitness=float(fitness[0]),
            evaluations=self.ev.n_evaluations,
            init_info=info,
            best_sparsity_so_far=float(sparsity(pop).max()),
        )
        return replace(state, seconds=time.perf_counter() - start)

    # -- one generation (ask / tell) --------------------------------------------------------

    def ask(self, state: GAState) -> torch.Tensor:
        """The generation's new genomes: children, then mutants, then migrants."""
        cfg = self.cfg
        children = ops.crossover(state.population, cfg.rec_rate, cfg.n_parents, self.rng)
        mutants = ops.mutate(torch.cat([state.population, children]), cfg.mut_rate, self.rng)
        migrants = ops.random_masks(cfg.n_migrants, self.ev.n_bits, cfg.init_density, self.rng)
        return torch.cat([children, mutants, migrants])

    def tell(self, state: GAState, new: torch.Tensor, started: float) -> GAState:
        """Score the new genomes, keep the top N of parents + new, log the generation.
        `started` is the `time.perf_counter()` at which the generation began."""
        scores, fitness = self._score(new)
        pop, scores, fitness = self._ranked(
            torch.cat([state.population, new]),
            torch.cat([state.scores, scores]),
            torch.cat([state.fitness, fitness]),
            self.cfg.population,
        )
        generation = state.generation + 1
        improved = float(fitness[0]) > state.best_fitness
        sparsities = sparsity(pop)
        best_so_far = max(state.best_sparsity_so_far, float(sparsities.max()))
        total_seconds = state.seconds + time.perf_counter() - started
        row = {
            "generation": generation,
            "best_performance": float(scores[0, self._obj]),
            "best_accuracy": float(scores[0, self._acc]),
            "best_sparsity": float(sparsities[0]),
            "max_sparsity": float(sparsities.max()),
            "best_sparsity_so_far": best_so_far,
            "mean_performance": float(scores[:, self._obj].mean()),
            "diversity": ops.diversity(pop),
            "evaluations": self.ev.n_evaluations,
            "seconds": round(total_seconds, 4),
        }
        return GAState(
            population=pop,
            scores=scores,
            fitness=fitness,
            rng_state=self.rng.get_state(),
            generation=generation,
            best_fitness=float(fitness[0]) if improved else state.best_fitness,
            last_improvement=generation if improved else state.last_improvement,
            best_sparsity_so_far=best_so_far,
            evaluations=self.ev.n_evaluations,
            seconds=total_seconds,
            history=(*state.history, row),
            init_info=state.init_info,
        )

    def done(self, state: GAState) -> bool:
        g = state.generation
        if g >= self.cfg.generation_cap:
            return True
        return g >= self.cfg.min_generations and g - state.last_improvement >= self.cfg.patience

    # -- the loop --------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> GAState:
        """Evolve until done; resume from the checkpoint if asked and one exists."""
        state = None
        if resume and self.checkpoint and self.checkpoint.exists():
            state, self.resumed_code = load_checkpoint(self.checkpoint, self.fingerprint, self.ev)
            self.rng.set_state(state.rng_state)
            self.before_resume_seconds = float(state.seconds)
        bar = _progress_bar(self.cfg.generation_cap, self.progress)
        small = self.ev.is_small(self.cfg.population)  # then one thread: see Evaluator.is_small
        with sigterm_as_interrupt(), torch_threads(1) if small else nullcontext():
            try:
                if state is None:
                    state = self.initial_state()
                bar.update(state.generation)
                while not self.done(state):
                    started = time.perf_counter()
                    state = self.tell(state, self.ask(state), started)
                    self._report(bar, state)
                    if (
                        self.checkpoint
                        and self.checkpoint_every
                        and (state.generation % self.checkpoint_every == 0)
                    ):
                        self._save(self.checkpoint, state)
            except KeyboardInterrupt:
                # `state` is always a whole generation: save it so `--resume` continues here.
                if self.checkpoint and state is not None:
                    self._save(self.checkpoint, state)
                raise
            finally:
                bar.close()
        if self.checkpoint and self.checkpoint_every:
            self._save(self.checkpoint, state)
        return state

    def _save(self, path: Path, state: GAState) -> None:
        save_checkpoint(path, state, self.fingerprint, self.ev, self.resumed_code)

    def _report(self, bar: Any, state: GAState) -> None:
        row = state.history[-1]
        rate = state.evaluations / max(state.seconds, 1e-9)
        bar.set_postfix_str(
            f"acc {row['best_accuracy']:.4f} sparsity {row['best_sparsity']:.3f} evals/s {rate:,.0f}",
            refresh=False,
        )
        bar.update(1)


def _progress_bar(total: int, enabled: bool) -> Any:
    from evoprune.progress import progress_bar

    return progress_bar(total=total, desc="generations", unit="gen", enabled=enabled, leave=False)
