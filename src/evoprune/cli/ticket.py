"""`evoprune evaluate | export`: score a found ticket on its data, new data or fresh samples,
and write its masked network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evoprune.cli.data import (
    add_data_args,
    add_fresh_args,
    check_fresh,
    check_writable_file,
    fresh_samples,
    fresh_seed,
    named_dataset,
    new_data,
    output_classes,
    own_dataset_flags,
)
from evoprune.errors import EvopruneError

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "evaluate": "score a ticket on its dataset (or another)",
    "export": "write a ticket's masked network as a torch state_dict",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help=COMMANDS["evaluate"])
    p.add_argument("ticket", type=Path, help="a ticket.npz written by a run, or its folder")
    add_data_args(p, required=False)
    add_fresh_args(p, "score the ticket on", " (its error rate, with a 95%% interval: a "
                   "16,000-point test set resolves rates only to about 1e-4)")  # fmt: skip
    p.set_defaults(run=run_evaluate)

    p = sub.add_parser("export", help=COMMANDS["export"])
    p.add_argument("ticket", type=Path, help="a ticket.npz written by a run, or its folder")
    p.add_argument(
        "--out",
        type=Path,
        help="output .pt file (default: network.pt beside the ticket, or small.pt in the "
        "selection-prune run's folder)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        help="for a selection-prune run (its folder): remove this share of hidden neurons, "
        "lowest masses first (default: only the extinct ones)",
    )
    p.set_defaults(run=run_export)


def run_evaluate(args: argparse.Namespace) -> int:
    from evoprune.data.registry import dataset_from_config
    from evoprune.nets import MLP
    from evoprune.scores import score, score_splits
    from evoprune.ticket import Ticket

    fresh_seed(args)  # --fresh-seed without --fresh: an error before any work
    ticket = Ticket.load(args.ticket)
    if args.fresh is not None:
        _check_fresh(args, ticket)
    model = ticket.build_model()
    n_in = model.linears[0].in_features if isinstance(model, MLP) else 784  # else the conv net
    n_out = output_classes(model)
    if args.data is not None:  # new data: every row, preprocessed as the ticket's training data
        X, y = new_data(args, ticket, n_out)
        _check_width(args.ticket, n_in, X[0].numel(), ticket.dataset.get("columns"))
        _check_classes(model, ticket, args.data.name, X, y)
        m = score_splits(model, ticket.mask, {"all": (X, y)}, ticket.space(model))
        print(
            f"{args.data.name}: {len(y)} rows, acc {m['all_accuracy']:.4f}, "
            f"loss {m['all_loss']:.4f}, sparsity {ticket.sparsity:.3f}"
        )
        return 0
    own_dataset_flags(args, ticket.dataset)
    if args.dataset is None:
        ds = dataset_from_config(ticket.dataset)
        _note_changed(ticket.dataset, ds.config)
    else:
        ds = named_dataset(args, ticket.dataset)
    _check_width(args.ticket, n_in, ds.n_features)
    _check_classes(model, ticket, ds.name, ds.X_train, ds.y_train, ds.X_test, ds.y_test)
    m = score(model, ticket.mask, ds, ticket.space(model))
    print(
        f"{ds.name}: train acc {m['train_accuracy']:.4f}, test acc {m['test_accuracy']:.4f}, "
        f"train loss {m['train_loss']:.4f}, test loss {m['test_loss']:.4f}, "
        f"sparsity {ticket.sparsity:.3f}"
    )
    if args.fresh:
        _print_fresh(model, ticket, args.fresh, fresh_seed(args))
    return 0


def _check_fresh(args: argparse.Namespace, ticket: Any) -> None:
    """Before any scoring: --fresh for this ticket, and no other data beside it."""
    check_fresh(ticket.dataset, args.fresh)
    name = ticket.dataset.get("name")
    if args.data is not None or args.dataset not in (None, name):
        raise EvopruneError(f"--fresh: draws from the ticket's own dataset ({name}); "
                            "leave out --data / --dataset")  # fmt: skip


def _print_fresh(model: Any, ticket: Any, n: int, seed: int) -> None:
    """The ticket's accuracy on `n` fresh samples of its generated dataset, with the error
    rate's exact (Clopper-Pearson) 95% interval; then the Bayes rule's errors there."""
    from scipy.stats import beta

    from evoprune.data.bayes import bayes_predict
    from evoprune.data.newdata import trained_normalize
    from evoprune.scores import score_splits

    X, y = fresh_samples(ticket.dataset, n, seed)
    accuracy = score_splits(model, ticket.mask, {"fresh": (X, y)}, ticket.space(model))[
        "fresh_accuracy"
    ]
    errors = round((1 - accuracy) * n)
    low = beta.ppf(0.025, errors, n - errors + 1) if errors else 0.0
    high = beta.ppf(0.975, errors + 1, n - errors) if errors < n else 1.0
    print(
        f"{ticket.dataset.get('name')}: {n:,} fresh samples (seed {seed}): acc {accuracy:.6f}, "
        f"{errors:,} errors, error rate {errors / n:.3g} (95% CI {low:.3g} to {high:.3g})"
    )
    name = ticket.dataset["name"]
    bayes = int((bayes_predict(name, X, trained_normalize(ticket.dataset)) != y).sum())
    print(f"the Bayes rule (the best possible) on the same samples: {bayes:,} errors, "
          f"error rate {bayes / n:.3g}")  # fmt: skip


def _note_changed(recorded: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    """A note (not an error: the scores are right for the data as read, and the same images
    re-saved differ in bytes) when the ticket's data file no longer has the digest it had."""
    before, now = recorded.get("sha256"), rebuilt.get("sha256")
    if before and now and before != now:
        where = recorded.get("path") or recorded.get("data_dir") or recorded.get("name")
        print(f"note: {where} has changed since the ticket was made (sha256 {before} then, "
              f"{now} now); scoring the data as it is now", file=sys.stderr)  # fmt: skip


def _check_classes(model: Any, ticket: Any, name: str, *tensors: Any) -> None:
    """Labels the network cannot output (a 3-class ticket on 10 classes): one line saying how
    many classes the ticket has, instead of an index error inside torch."""
    from evoprune.inputs import check_data

    try:
        check_data(model, *tensors)
    except EvopruneError as exc:
        n_out = output_classes(model)
        if ticket.dataset.get("name") in (None, "file"):
            hint = f"; the ticket has {n_out} classes"
        else:
            hint = (f"; the ticket has {n_out} classes (trained with --classes {n_out}); "
                    f"pass --classes {n_out}")  # fmt: skip
        raise EvopruneError(f"{name}: {exc}{hint}") from None


def _check_width(
    ticket: Path, n_in: int, n_features: int, columns: list[str] | None = None
) -> None:
    from evoprune.data.registry import describe_columns

    if n_features != n_in:
        raise EvopruneError(
            f"{ticket}: the network takes {n_in} features{describe_columns(columns)}, "
            f"the data has {n_features}"
        )


def run_export(args: argparse.Namespace) -> int:
    from evoprune.ticket import Ticket, export_state_dict, ticket_path

    if (args.ticket / "network.npz").is_file() or args.ticket.name == "network.npz":
        # a selection-prune run: its own, physically smaller export
        from evoprune.cli.selection import run_export_selection

        run_dir = args.ticket if args.ticket.is_dir() else args.ticket.parent
        args.out = args.out or run_dir / "small.pt"
        return run_export_selection(args)
    args.ticket = ticket_path(args.ticket)
    args.out = args.out or args.ticket.parent / "network.pt"
    if args.out.suffix.lower() not in (".pt", ".pth"):
        raise EvopruneError(f"--out: expected a .pt file name, got {str(args.out)!r}")
    check_writable_file(args.out)
    if args.fraction is not None:
        raise EvopruneError("--fraction: only for a selection-prune run")
    ticket = Ticket.load(args.ticket)
    export_state_dict(ticket, args.out)
    shape = f"layers {ticket.layers}" if ticket.layers is not None else f"arch {ticket.arch}"
    if ticket.activation != "relu":  # the state_dict holds weights only: the net's nonlinearity
        shape += f", {ticket.activation} between the layers"
    print(f"wrote {args.out} ({shape}, sparsity {ticket.sparsity:.3f})")
    return 0
