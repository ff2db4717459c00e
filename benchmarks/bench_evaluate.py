"""Population evaluation throughput: our batched `Evaluator` against a per-individual loop.

The per-individual loop is what the paper's code does for every genome: copy the model,
multiply its weights by the mask, forward the whole training set, take the accuracy. Both score
the same seeded generations of 53 random masks (what one GA generation with N=100 produces:
~30 children, ~13 mutants, 10 migrants) in one process, accuracy only, cache off.

    .venv/bin/python benchmarks/bench_evaluate.py [--generations 20] [--repeats 5]

"ours s/gen" is the best of `--repeats` passes (wall clock), "cpu s/gen" the best CPU time of
this process per generation (both cores); the loop's is its best of `--repeats` passes too (it
is the column that moves most with the machine's load). A second table gives our seconds
per generation for each objective (its own metric alone, as the GA asks for it), and a third
the fast path against the general one (`fast=False`, `functional_call` under `vmap`) for each
nonlinearity an MLP can have between its layers (`--activation`), with the largest accuracy
difference between the two.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch
from torch import nn

from evoprune.archs import ACTIVATIONS
from evoprune.data import load_dataset
from evoprune.evaluate import Evaluator
from evoprune.masks import MaskSpace
from evoprune.nets import build_mlp, parse_arch
from evoprune.objectives import OBJECTIVES

POP = 53  # new genomes per generation at N=100
# (dataset, classes, arch, target seconds per generation on the 2-core CPU box)
CASES = [("moons", 2, "B", 0.06), ("digits", 10, "B", 0.02), ("moons", 2, "D", 0.16)]


def per_individual(model: nn.Module, space: MaskSpace, masks: torch.Tensor, X, y) -> torch.Tensor:
    """Accuracy of each mask, one deep-copied, masked model at a time: ``(P,)`` float64."""
    accs = []
    with torch.no_grad():
        for mask in masks:
            clone = copy.deepcopy(model)
            per_param = space.split(mask)
            for name, param in clone.named_parameters():
                if name in per_param:
                    param.mul_(per_param[name].to(param.dtype))
            accs.append((clone(X).argmax(dim=1) == y).double().mean())
    return torch.stack(accs)


def seconds_per_generation(
    fn, generations: list[torch.Tensor], repeats: int = 1
) -> tuple[float, float, list]:
    """Best wall and best CPU seconds per generation over `repeats` passes, and the results.

    The box is shared: best-of-N wall time is the least disturbed pass, and CPU time (all
    threads of this process) shows the work done whatever the load.
    """
    fn(generations[0])  # warm-up: first-call allocations and thread start-up
    wall = cpu = float("inf")
    for _ in range(repeats):
        results, start, cpu0 = [], time.perf_counter(), time.process_time()
        for masks in generations:
            results.append(fn(masks))
        wall = min(wall, (time.perf_counter() - start) / len(generations))
        cpu = min(cpu, (time.process_time() - cpu0) / len(generations))
    return wall, cpu, results


def bench_case(
    name: str, classes: int, arch: str, target: float, n_gen: int, seed: int, repeats: int
) -> None:
    ds = load_dataset(name, classes)
    net = build_mlp(parse_arch(arch, ds.n_features, ds.n_classes), seed=seed)
    X, y = ds.X_train, ds.y_train
    ev = Evaluator(net, X, y, objective="accuracy", cache=False)
    gen = torch.Generator().manual_seed(seed)
    generations = [torch.rand(POP, ev.n_bits, generator=gen) < 0.5 for _ in range(n_gen)]

    ours, ours_cpu, ours_acc = seconds_per_generation(
        lambda m: ev.evaluate(m)["accuracy"], generations, repeats
    )
    loop, _, loop_acc = seconds_per_generation(
        lambda m: per_individual(net, ev.space, m, X, y), generations, repeats
    )
    # Largest accuracy difference between the two; float32 sums in another order can flip
    # a sample whose two top logits are within rounding of each other.
    diff = max((a - b).abs().max().item() for a, b in zip(ours_acc, loop_acc, strict=True))
    verdict = "PASS" if ours <= target else "MISS"
    case = f"{name}-{ds.n_classes} {arch}"
    print(
        f"{case:<16}{len(X):>8}{ours:>12.4f}{ours_cpu:>10.4f}{loop:>12.4f}{loop / ours:>8.1f}x"
        f"{target:>8.2f}{verdict:>6}{diff:>12.2g}"
    )


def objective_costs(
    name: str, classes: int, arch: str, n_gen: int, seed: int, repeats: int
) -> None:
    """Our best wall seconds per generation with each built-in objective as the only metric."""
    ds = load_dataset(name, classes)
    net = build_mlp(parse_arch(arch, ds.n_features, ds.n_classes), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    n_bits = MaskSpace(net).n_bits
    generations = [torch.rand(POP, n_bits, generator=gen) < 0.5 for _ in range(n_gen)]
    cells = []
    for objective in OBJECTIVES:
        ev = Evaluator(net, ds.X_train, ds.y_train, objective, cache=False, metrics=(objective,))
        wall, _, _ = seconds_per_generation(ev.evaluate, generations, repeats)
        cells.append(f"{wall:>12.4f}")
    print(f"{f'{name}-{ds.n_classes} {arch}':<16}" + "".join(cells))


def activation_costs(
    name: str, classes: int, arch: str, n_gen: int, seed: int, repeats: int
) -> None:
    """Best wall seconds per generation of the fast and the general path, per nonlinearity."""
    ds = load_dataset(name, classes)
    layers = parse_arch(arch, ds.n_features, ds.n_classes)
    gen = torch.Generator().manual_seed(seed)
    n_bits = MaskSpace(build_mlp(layers)).n_bits
    generations = [torch.rand(POP, n_bits, generator=gen) < 0.5 for _ in range(n_gen)]
    for activation in ACTIVATIONS:
        net = build_mlp(layers, seed=seed, activation=activation)
        walls, accs = [], []
        for fast in (True, False):
            ev = Evaluator(net, ds.X_train, ds.y_train, cache=False, fast=fast)
            wall, _, acc = seconds_per_generation(
                lambda m, ev=ev: ev.evaluate(m)["accuracy"], generations, repeats if fast else 1
            )
            walls.append(wall)
            accs.append(acc)
        diff = max((a - b).abs().max().item() for a, b in zip(*accs, strict=True))
        print(f"{f'{name}-{ds.n_classes} {arch}':<16}{activation:>10}{walls[0]:>10.4f}"
              f"{walls[1]:>10.4f}{walls[1] / walls[0]:>8.1f}x{diff:>12.2g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="passes of ours; best is shown")
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}, {POP} masks x {args.generations} generations"
    )
    header = f"{'case':<16}{'samples':>8}{'ours s/gen':>12}{'cpu s/gen':>10}{'loop s/gen':>12}"
    header += f"{'speedup':>9}"
    header += f"{'target':>8}{'':>6}{'max |dacc|':>12}"
    print(header)
    print("-" * len(header))
    for name, classes, arch, target in CASES:
        bench_case(name, classes, arch, target, args.generations, args.seed, args.repeats)
    print("\nours, s/gen by objective")
    print(f"{'case':<16}" + "".join(f"{o:>12}" for o in OBJECTIVES))
    for name, classes, arch, _ in CASES:
        objective_costs(name, classes, arch, args.generations, args.seed, args.repeats)
    print("\nfast path against the general one, s/gen (accuracy), by --activation")
    print(
        f"{'case':<16}{'activation':>10}{'fast':>10}{'general':>10}{'ratio':>9}{'max |dacc|':>12}"
    )
    for name, classes, arch, _ in CASES[:2]:
        activation_costs(name, classes, arch, args.generations, args.seed, args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
