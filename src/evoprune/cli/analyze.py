"""`evoprune analyze landscape | hessian | graph` and `evoprune plot history | boundary`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoprune.cli.data import check_out, check_writable_file, set_threads
from evoprune.errors import EvopruneError

if TYPE_CHECKING:
    from evoprune.data.registry import Dataset

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "analyze": "the paper's analyses of tickets: landscape, hessian, graph",
    "plot": "figures of runs: history (Fig. 4), decision boundary",
}


def _seed_out_threads(q: argparse.ArgumentParser, seed_help: str) -> None:
    """--seed, --out and --threads, as the landscape and the Hessian take them."""
    q.add_argument("--seed", type=int, default=0, help=seed_help)
    q.add_argument("--out", type=Path, help="output folder (default: the ticket's folder)")
    q.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the many small products of this analysis gain little "
        "from more, and lose much when the cores are shared)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    from evoprune.analysis.choices import DIRECTIONS, PARAM_SETS
    from evoprune.cli.data import add_data_args

    p = sub.add_parser(
        "analyze",
        help=COMMANDS["analyze"],
        description="The analyses of arXiv 2508.08877: loss and accuracy landscapes (Fig. 8), "
        "Hessian spectra (digits analysis) and the ticket graph (Fig. 1).",
    )
    what = p.add_subparsers(dest="analysis", required=True, parser_class=type(p))

    q = what.add_parser(
        "landscape",
        help="loss and accuracy on a grid around a ticket (Fig. 8)",
        description="Score w = w_ticket + delta*d1 + eta*d2 on the training data for a GRID x GRID "
        "grid of (delta, eta) in [-span, span]^2. Default data: the ticket's own dataset.",
    )
    q.add_argument("ticket", type=Path, help="a ticket.npz, or its run folder")
    add_data_args(q, required=False)
    q.add_argument("--grid", type=int, default=41, help="points per axis, odd (default 41)")
    q.add_argument(
        "--span", type=float, default=1.0, help="delta, eta in [-span, span] (default 1.0)"
    )
    q.add_argument("--directions", choices=DIRECTIONS, default="gaussian", help="default gaussian")
    q.add_argument(
        "--params",
        choices=PARAM_SETS,
        default="surviving",
        help="which parameters move (default: the weights the ticket keeps)",
    )
    _seed_out_threads(q, "seed of the two directions (default 0)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(run=_landscape)

    q = what.add_parser(
        "hessian",
        help="eigenvalues of the training-loss Hessian of a ticket",
        description="Eigenvalues of the Hessian of the mean training cross-entropy with respect "
        "to the ticket's surviving weights (and biases with --biases): the whole spectrum when "
        "there are at most 3,000 of them, else the largest --top by Lanczos.",
    )
    q.add_argument("ticket", type=Path, help="a ticket.npz, or its run folder")
    add_data_args(q, required=False)
    q.add_argument(
        "--top",
        type=int,
        help="only the K largest eigenvalues, by Lanczos (default: all "
        "of a ticket of up to 3,000 parameters, else the 20 largest)",
    )
    q.add_argument("--biases", action="store_true", help="include every bias")
    q.add_argument(
        "--method", choices=["auto", "dense", "lanczos"], default="auto", help="default auto"
    )
    _seed_out_threads(q, "seed of Lanczos' start vector (default 0)")
    q.add_argument("--quiet", action="store_true", help="no progress output (it has none)")
    q.set_defaults(run=_hessian)

    q = what.add_parser(
        "graph",
        help="how often each connection survives over a sweep cell's tickets (Fig. 1)",
        description="SOURCE: a sweep folder (the tickets of one cell: --dataset, --arch, "
        "--label, --classes pick it) or one ticket.npz. Writes FILE.png and FILE.csv.",
    )
    q.add_argument("source", type=Path, help="sweep folder, run folder or ticket.npz")
    q.add_argument("--dataset", help="the cell's dataset")
    q.add_argument("--arch", help="the cell's architecture (A-D or a layer list)")
    q.add_argument("--label", help="the cell's arm label (e.g. GA)")
    q.add_argument("--classes", type=int, help="the cell's class count")
    q.add_argument(
        "--out",
        type=Path,
        help="output .png, the CSV goes beside it (default: graph.png beside the ticket, or "
        "graph-DATASET[-cCLASSES]-ARCH-LABEL.png in the sweep folder)",
    )
    q.add_argument("--quiet", action="store_true", help="no progress output (it has none)")
    q.set_defaults(run=_graph)

    p = sub.add_parser("plot", help=COMMANDS["plot"])
    what = p.add_subparsers(dest="plot", required=True, parser_class=type(p))
    q = what.add_parser(
        "history",
        help="a run's course from its history.csv: for the GA, Fig. 4; any method's run",
        description="Draw RUN_DIR/history.csv. A GA, memetic or local run: the training "
        "accuracy and sparsity of the fittest, the highest sparsity in the generation and so "
        "far, the objective when it is the loss or F1; a memetic or local run's local-search "
        "passes after the generations; the final ticket of result.json (after post-pruning) as "
        "a star. Any other method's run: a panel per numeric column of history.csv against its "
        "generations, epochs, trials or evaluations.",
    )
    q.add_argument("run_dir", type=Path, help="a run folder with history.csv")
    q.add_argument("--out", type=Path, help="output .png (default RUN_DIR/history.png)")
    q.set_defaults(run=_history)

    q = what.add_parser(
        "boundary",
        help="decision boundaries of tickets on two-feature data, beside the Bayes rule's",
        description="Draw each ticket's decision boundary over its training data and mark its "
        "test errors; on moons and circles also the boundary of the Bayes rule, the most "
        "accurate classifier there is. The tickets must share their dataset. Default data: "
        "the tickets' own.",
    )
    q.add_argument("tickets", type=Path, nargs="+", help="ticket.npz files or their run folders")
    add_data_args(q, required=False)
    q.add_argument("--grid", type=int, default=301, help="points per axis, 3 to 2001 (default 301)")
    q.add_argument(
        "--out", type=Path, help="output .png (default: boundary.png beside the first ticket)"
    )
    q.set_defaults(run=_boundary)


def _dataset(args: argparse.Namespace, ticket: Any) -> Dataset | None:
    """The data the user named, read as the ticket's training data was (its classes, columns,
    labels and scaling), or None for the ticket's own. A --data file's rows are all of it:
    its training and its test set."""
    from evoprune.cli.data import named_dataset, new_data, output_classes, own_dataset_flags
    from evoprune.data.registry import Dataset

    own_dataset_flags(args, ticket.dataset)
    if args.dataset is None and args.data is None:
        return None
    if args.data is None:
        return named_dataset(args, ticket.dataset)
    n_out = output_classes(ticket.build_model())
    X, y = new_data(args, ticket, n_out)
    config = {"name": "file", "path": str(args.data.resolve()), "rows": "all"}
    return Dataset(args.data.name, X, y, X, y, n_out, config)


def _source(path: Path) -> dict[str, Any]:
    """Which ticket file an analysis read: its absolute path and the SHA-256 of its bytes
    (beside the ticket's description and the data, which the analysis records itself)."""
    from evoprune.data.files import file_digest
    from evoprune.ticket import ticket_path

    path = ticket_path(path).resolve()
    return {"ticket_file": str(path), "ticket_sha256": file_digest(path)}


def _landscape(args: argparse.Namespace) -> int:
    from evoprune.analysis.landscape import LandscapeConfig, ticket_landscape, write_landscape
    from evoprune.ticket import Ticket, ticket_path

    config = LandscapeConfig(args.grid, args.span, args.directions, args.params, args.seed)
    out = _files_free(check_out(args.out or ticket_path(args.ticket).parent, finished_ok=True),
                      "landscape", (".npz", ".csv", ".json", ".png"))  # fmt: skip
    set_threads(args.threads)
    ticket = _whole_mask(Ticket.load(args.ticket), "landscape")
    ds = _dataset(args, ticket)
    L = ticket_landscape(ticket, ds, config, progress=not args.quiet)
    write_landscape(L, out, _source(args.ticket))
    loss, acc = L.centre
    print(
        f"landscape {args.grid}x{args.grid} over {L.n_params} parameters ({args.params}, "
        f"{args.directions}): centre loss {loss:.6f}, accuracy {acc:.4f}; "
        f"{L.seconds:.1f} s -> {out / 'landscape.png'}"
    )
    return 0


def _hessian(args: argparse.Namespace) -> int:
    from evoprune.analysis.hessian import ticket_hessian, write_hessian
    from evoprune.ticket import Ticket, ticket_path

    if args.top is not None and args.top < 1:
        raise EvopruneError(f"--top: expected a positive number, got {args.top}")
    out = _files_free(check_out(args.out or ticket_path(args.ticket).parent, finished_ok=True),
                      "hessian", (".json", ".png"))  # fmt: skip
    set_threads(args.threads)
    ticket = _whole_mask(Ticket.load(args.ticket), "hessian")
    ds = _dataset(args, ticket)
    h = ticket_hessian(
        ticket,
        ds,
        top=args.top,
        biases=args.biases,
        method=args.method,
        seed=args.seed,
    )
    write_hessian(h, out, _source(args.ticket))
    ev = h.eigenvalues
    print(
        f"hessian ({h.method}, {h.n_params} parameters): "
        + (
            f"the {len(ev)} largest eigenvalues, {ev[0]:.6g} down to {ev[-1]:.6g}"
            if args.top is not None and len(ev) < h.n_params
            else f"{len(ev)} eigenvalues, largest {ev[0]:.6g}, smallest {ev[-1]:.6g}"
        )  # fmt: skip
        + f"; {h.seconds:.1f} s -> {out / 'hessian.json'}"
    )
    return 0


def _graph(args: argparse.Namespace) -> int:
    from evoprune.analysis.graph import ticket_graph, write_graph
    from evoprune.ticket import Ticket

    if args.out is not None and args.out.suffix.lower() != ".png":
        raise EvopruneError(f"--out: expected a .png file name, got {str(args.out)!r}")
    if args.out is not None:
        check_writable_file(args.out)
    if (args.source / "ticket.npz").is_file():  # a run folder: its ticket
        args.source = args.source / "ticket.npz"
    example_name = None
    if args.source.is_file():
        from evoprune.analysis.params import describe
        from evoprune.analysis.plots import ticket_caption

        tickets = [_whole_mask(Ticket.load(args.source), "graph")]
        title = f"The {ticket_caption(describe(tickets[0]))}"
        out = args.out or args.source.parent / "graph.png"
    elif args.source.is_dir():
        import pandas as pd

        from evoprune.experiments.sections.analyses import cell_tickets
        from evoprune.experiments.tables import load_results

        runs = load_results(args.source)
        tickets, cell = cell_tickets(runs, args.dataset, args.arch, args.label, args.classes)
        data = cell["dataset"]
        if pd.notna(cell["classes"]):
            data += f" ({int(cell['classes'])} classes)"
        seeds = ", ".join(map(str, cell["seeds"]))
        title = (
            f"{data}, {cell['arch_name']}, {cell['label']}: {len(tickets)} tickets (seeds {seeds})"
        )
        example_name = f"the ticket of seed {cell['seeds'][0]}"
        parts = [cell["dataset"], cell["arch_name"], cell["label"]]
        if pd.notna(cell["classes"]):
            parts.insert(1, f"c{int(cell['classes'])}")
        name = "-".join(str(p).replace(" ", "_").replace("/", "_") for p in parts)
        out = args.out or args.source / f"graph-{name}.png"
    else:
        raise EvopruneError(f"{args.source}: no such sweep folder or ticket file")
    g = ticket_graph(tickets)
    paths = write_graph(g, out, title, example_name)
    kept = sum(int((f > 0.5).sum()) for f in g.frequency)
    total = sum(f.size for f in g.frequency)
    where = "kept" if g.n_tickets == 1 else "kept in more than half"
    print(
        f"ticket graph over {g.n_tickets} ticket(s) {g.layers}: {kept} of {total} connections "
        f"{where} -> {paths['png']}, {paths['csv']}"
    )
    return 0


def _history(args: argparse.Namespace) -> int:
    from evoprune.analysis.plots import save_png
    from evoprune.experiments.draw import draw_history
    from evoprune.experiments.run_history import final_caption, prepare_run_history, run_title

    out = args.out or args.run_dir / "history.png"
    if out.suffix.lower() != ".png":
        raise EvopruneError(f"--out: expected a .png file name, got {str(out)!r}")
    check_writable_file(out)
    frame = prepare_run_history(args.run_dir)
    result = frame.attrs["result"]
    title = run_title(result, f"run {args.run_dir}")
    caption = final_caption(result, frame.attrs["final_label"])
    save_png(draw_history(frame, title, caption), out)
    curves = frame[~frame["final"]]
    spans, counts = frame.attrs.get("spans"), []
    for phase in dict.fromkeys(curves["phase"]):  # a GA's generations, local-search passes
        n = curves.loc[curves["phase"] == phase, "step"].nunique()
        unit = "generation" if phase == "GA" else f"{phase} pass"
        counts.append(f"{phase}: {spans[phase]}" if spans else
                      f"{n} {unit}" + ("" if n == 1 else "es" if unit.endswith("s") else "s"))  # fmt: skip
    if not caption:
        caption = "no result.json" if not result else "no accuracy or sparsity in result.json"
    if left := frame.attrs.get("left_out"):
        caption += f" (not drawn, beyond {len(set(curves['panel']))} panels: {', '.join(left)})"
    print(f"{', '.join(counts)}; {caption} -> {out}")
    return 0


def _boundary(args: argparse.Namespace) -> int:
    from evoprune.analysis.boundary import decision_boundaries
    from evoprune.analysis.plots import draw_boundaries, save_png
    from evoprune.data.registry import dataset_from_config
    from evoprune.ticket import Ticket, ticket_path

    paths = [ticket_path(t) for t in args.tickets]
    out = args.out or paths[0].parent / "boundary.png"
    if out.suffix.lower() != ".png":
        raise EvopruneError(f"--out: expected a .png file name, got {str(out)!r}")
    check_writable_file(out)
    tickets = [Ticket.load(p) for p in paths]
    for path, ticket in zip(paths[1:], tickets[1:], strict=True):
        if ticket.dataset != tickets[0].dataset:
            raise EvopruneError(
                f"{path}: found on other data than {paths[0]} "
                f"({ticket.dataset.get('name')} against {tickets[0].dataset.get('name')})"
            )
    ds = _dataset(args, tickets[0]) or dataset_from_config(tickets[0].dataset)
    labels = [_ticket_label(p, t) for p, t in zip(paths, tickets, strict=True)]
    b = decision_boundaries(tickets, labels, ds, args.grid)
    layers = {str(t.layers) for t in tickets}
    title = f"{ds.name}, {' / '.join(sorted(layers))}: decision boundaries and test errors"
    save_png(draw_boundaries(b, title), out)
    errors = [f"{label} {len(e):,}" for label, e in zip(b.labels, b.test_errors, strict=True)]
    if b.bayes_test_errors is not None:
        errors.append(f"the Bayes rule {len(b.bayes_test_errors):,}")
    print(f"{ds.name}, test errors of {len(ds.y_test):,}: {', '.join(errors)} -> {out}")
    return 0


def _files_free(out: Path, stem: str, suffixes: tuple[str, ...]) -> Path:
    """`out`, if none of the files an analysis writes there (`stem` + each suffix) is a folder:
    found after the work, it left the files written before it (half an output)."""
    for suffix in suffixes:
        if (out / f"{stem}{suffix}").is_dir():
            raise EvopruneError(f"--out {out}: {stem}{suffix} there is a folder; expected a file")
    return out


def _whole_mask(ticket: Any, analysis: str) -> Any:
    """`ticket`, if its mask covers every weight of its network (the analyses' layout)."""
    if ticket.weights is not None:
        raise EvopruneError(
            f"{analysis}: the ticket masks only some weights ({', '.join(ticket.weights)}, a "
            "search over a MaskSpace of its own); the analyses take a mask over all of them"
        )
    return ticket


def _ticket_label(path: Path, ticket: Any) -> str:
    """``memetic seed 4`` from the run folder's result.json (when `path` is that folder's
    ticket.npz, not another ticket copied beside it), else the ticket's own record."""
    from evoprune.analysis.plots import METHOD_NAMES
    from evoprune.cli.compare import load_result

    own = path.name == "ticket.npz" and (path.parent / "result.json").is_file()
    result = load_result(path.parent) if own else {}
    method = result.get("variant") or result.get("method") or ticket.method
    return f"{METHOD_NAMES.get(method, method)} seed {result.get('seed', ticket.seed)}"
