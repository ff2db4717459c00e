"""The data flags every command shares (--dataset, --data, --target, --data-dir, --normalize), the
job keys they make, --init and the default run folder of the commands that search a random
network. Below every command module, so commands import it and not each other.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoprune.data.builtin import check_dataset
from evoprune.errors import EvopruneError

if TYPE_CHECKING:
    from evoprune.data.registry import Dataset


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--dataset",
        help="moons, circles, blobs, digits, mnist"
        + (" (this or --data is required)" if required else ""),
    )
    p.add_argument(
        "--classes",
        type=int,
        help="class count of a built-in dataset (blobs 2-10, digits 2,3,4,5,10, mnist 2-10; "
        + ("default: the ticket's)" if not required else "default: all of them)"),
    )
    p.add_argument("--data", type=Path, help="your own data: a .csv (with --target) or .npz (X, y)")
    p.add_argument("--target", help="label column of the CSV given with --data")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="MNIST: a folder with its IDX files (train-* and t10k-*: the official train/test "
        "split; torchvision's root with MNIST/raw works), or an .npz of images and labels (the "
        "file, or its folder: named *mnist* if there are several)",
    )
    norm = p.add_mutually_exclusive_group()
    norm.add_argument(
        "--normalize",
        dest="normalize",
        action="store_true",
        default=None,
        help="min-max scale features to [-0.7, 0.7] (default: per feature, fitted on the "
        "training split, for --data files; the paper's setting for built-in datasets)",
    )
    norm.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="use the features as they are",
    )


def add_fresh_args(p: argparse.ArgumentParser, what: str, note: str = "") -> None:
    """--fresh N and --fresh-seed (evaluate, compare): `what` the command does with them."""
    p.add_argument(
        "--fresh",
        type=int,
        metavar="N",
        help=f"moons / circles: also {what} N new samples of the dataset's distribution{note}",
    )
    p.add_argument("--fresh-seed", type=int, help=f"their seed (default: {FRESH_SEED})")


FRESH_SEED = 7  # --fresh's samples, unless --fresh-seed says otherwise


def fresh_seed(args: argparse.Namespace) -> int:
    """--fresh-seed, which only means something beside --fresh (one error line otherwise)."""
    if args.fresh_seed is not None and args.fresh is None:
        raise EvopruneError("--fresh-seed: only with --fresh N (the seed of its samples)")
    if args.fresh_seed is not None and not 0 <= args.fresh_seed < 2**32:
        raise EvopruneError(f"--fresh-seed: expected 0 to 2**32 - 1, got {args.fresh_seed}")
    return FRESH_SEED if args.fresh_seed is None else args.fresh_seed


def fresh_samples(trained: dict[str, Any], n: int, seed: int) -> tuple[Any, Any]:
    """`n` new samples of a ticket's generated training dataset (`trained`: its dataset config),
    scaled as its training data was; --fresh errors name the option."""
    from evoprune.data import fresh_sample
    from evoprune.data.newdata import trained_normalize

    check_fresh(trained, n)
    return fresh_sample(trained["name"], n, seed, trained_normalize(trained))


MAX_FRESH = 100_000_000  # samples drawn at once: about 1.6 GB of features in float64


def check_fresh(trained: dict[str, Any], n: int) -> None:
    """A positive --fresh N for a ticket found on a generated dataset, else one error line."""
    from evoprune.data.registry import GENERATORS

    if not 1 <= n <= MAX_FRESH:
        raise EvopruneError(f"--fresh: expected 1 to {MAX_FRESH:,} samples, got {n:,}")
    name = trained.get("name")
    if name not in GENERATORS:
        raise EvopruneError(
            f"--fresh: only for a ticket found on a generated dataset ({', '.join(GENERATORS)}); "
            f"this one was found on {trained.get('path') or name or 'a data file'}"
        )


def add_network_args(p: argparse.ArgumentParser) -> None:
    """--init and --activation of the commands that search a random network (search,
    edge-popup)."""
    from evoprune.archs import ACTIVATIONS, INITS

    p.add_argument(
        "--init",
        default="uniform",
        choices=INITS,
        help="initialisation of the random network (default uniform, the paper's)",
    )
    p.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        help="nonlinearity between the MLP's layers (default relu, the paper's; with another, "
        "a local search scores each flip by a batched forward, exact and slower)",
    )


def data_job(args: argparse.Namespace) -> dict[str, Any]:
    """The data keys of a job from the shared data arguments."""
    if args.data is not None and args.dataset is not None:
        raise EvopruneError("give either --dataset or --data, not both")
    if args.data is None and args.dataset is None:
        raise EvopruneError("--dataset NAME or --data FILE is required")
    if args.data is not None and args.classes is not None:
        raise EvopruneError(
            "--classes: only for the built-in datasets; a --data file uses all its classes"
        )
    if args.data is not None and args.data.suffix.lower() == ".csv" and not args.target:
        raise EvopruneError(f"{args.data}: a CSV needs the name of its label column (--target "
                            "COLUMN)")  # fmt: skip
    if args.target and args.data is None:
        raise EvopruneError("--target: only with --data (a built-in dataset has its labels)")
    if args.data_dir is not None and args.dataset != "mnist":
        raise EvopruneError("--data-dir: only with --dataset mnist (where its files are)")
    if args.dataset is not None:  # a misspelling is told before torch loads
        check_dataset(args.dataset)
    job: dict[str, Any] = {
        "dataset": args.dataset or "file",
        "classes": args.classes,
        "normalize": args.normalize,
    }
    if args.data is not None:
        job.update(data=str(args.data), target=args.target)
    if args.data_dir is not None:
        job["data_dir"] = str(args.data_dir)
    return job


def own_dataset_flags(args: argparse.Namespace, trained: dict[str, Any]) -> None:
    """--classes, --normalize or --data-dir without --dataset or --data, for a ticket: they
    change the ticket's own built-in dataset (whose name `args` takes), and are one error line
    for a ticket trained on a data file."""
    if args.data is None and getattr(args, "target", None) is not None:
        raise EvopruneError("--target: the label column of a --data file; only with --data")
    if args.dataset is not None or args.data is not None:
        return
    flags = (("--classes", args.classes), ("--normalize/--no-normalize", args.normalize),
             ("--data-dir", args.data_dir))  # fmt: skip
    given = [flag for flag, value in flags if value is not None]
    if not given:
        return
    from evoprune.data import DATASETS

    if trained.get("name") in DATASETS:  # the ticket's own dataset, but for the flags given
        args.dataset = trained["name"]
        if args.classes is None:
            args.classes = trained.get("classes")
        if args.normalize is None:
            args.normalize = trained.get("normalize")
        if args.data_dir is None and trained.get("data_dir"):
            args.data_dir = Path(trained["data_dir"])
        return
    raise EvopruneError(
        f"{given[0]}: only with --dataset or --data (this ticket was trained on "
        f"{trained.get('path') or 'a data file'})"
    )


def default_out(job: dict[str, Any]) -> Path:
    """``runs/METHOD-DATA[-cCLASSES]-ARCH[-OBJECTIVE][-pSPARSITY]-sSEED``: the settings that
    tell two runs of one command apart are in the name, so they do not collide."""
    parts = [str(job["method"]), *data_parts(job), str(job["arch"]).replace(",", "-")]
    if job.get("objective", "accuracy") != "accuracy":
        parts.append(str(job["objective"]))
    if job.get("sparsity") is not None:
        parts.append(f"p{job['sparsity']:g}")
    return Path("runs") / "-".join([*parts, f"s{job['seed']}"])


def data_parts(job: dict[str, Any]) -> list[str]:
    """The data's part of a run folder name: the dataset (or the file, by its name with the
    extension: my.csv and my.npz are two runs) and a class count other than the dataset's
    default, so `--classes 10` on digits names the same run as no --classes."""
    from evoprune.data import DATASETS

    name = Path(str(job.get("data") or job["dataset"])).name
    classes = job.get("classes")
    info = DATASETS.get(str(job.get("dataset")))
    if classes is None or (info is not None and classes == info.classes[0]):
        return [name]
    return [name, f"c{classes}"]


def set_threads(n: int | None) -> None:
    """--threads: torch's thread count (None leaves torch's default, one per core)."""
    if n is None:
        return
    if n < 1:
        raise EvopruneError(f"--threads: expected a positive number, got {n}")
    import torch

    torch.set_num_threads(n)


def check_out(out: Path, finished_ok: bool = False) -> Path:
    """The --out of a command that writes a run folder: a folder (or nothing yet), and not a
    finished run's unless `finished_ok`; without it, held for this command (`hold_out`)."""
    if out.exists() and not out.is_dir():
        raise EvopruneError(f"--out {out}: exists and is not a folder")
    above = next((p for p in out.absolute().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise EvopruneError(f"--out {out}: {above} is a file, not a folder")
    check_writable(out)
    _check_makeable(out)
    if finished_ok:
        return out
    hold_out(out)  # before looking for a result: one that ends meanwhile is seen
    if (out / "result.json").exists():
        raise EvopruneError(f"{out}: already holds a finished run; choose another --out")
    return out


# The run folders this command writes, each locked (flock on the folder) until it ends: two
# commands started with one --out wrote their checkpoints and files over each other's, and the
# last to end replaced the other's finished run. The lock goes with the process if it dies.
_held: list[tuple[Path, int, Path | None]] = []  # (folder, its descriptor, the top folder made)


def hold_out(out: Path) -> None:
    """Lock folder `out` (made if missing) for this command; refuse it if another holds it."""
    import fcntl

    path = Path(os.path.abspath(out))  # "new/../x" is x
    if any(held == path for held, _, _ in _held):
        return
    made = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EvopruneError(
            f"{out}: another evoprune command is writing a run into it; wait for it to end or "
            "choose another --out"
        ) from None
    _held.append((path, fd, made))


def release_outs() -> None:
    """Unlock the run folders this command held; those it made and left empty are removed (a
    run refused or interrupted before it wrote anything leaves no folder)."""
    while _held:
        path, fd, made = _held.pop()
        os.close(fd)
        while made is not None and made in (path, *path.parents):
            try:
                path.rmdir()
            except OSError:  # it holds files: the run's
                break
            path = path.parent


def _check_makeable(out: Path, option: str = "--out") -> None:
    """Whether a folder can be made where `out` would go: a scratch folder of a unique name is
    made in the nearest existing folder above and removed again (nothing of `out`'s own path is
    made, so runs starting side by side do not undo each other's folders). /proc or a read-only
    file system is refused before the work, not after it."""
    path = Path(os.path.abspath(out))  # "new/../x" is x
    if path.exists():
        return
    above = next((p for p in path.parents if p.exists()), None)
    if above is None or not above.is_dir():
        return  # said by the caller's checks
    try:
        os.rmdir(tempfile.mkdtemp(dir=above, prefix=".evoprune-check-"))
    except OSError as exc:
        raise EvopruneError(f"{option} {out}: cannot make this folder ({exc.strerror})") from None


def check_writable(out: Path) -> None:
    """Refuse an output path whose folder (or the nearest existing folder above it) this user
    cannot write, before any work is done."""
    folder = out if out.is_dir() else next((p for p in out.absolute().parents if p.is_dir()), None)
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise EvopruneError(f"--out {out}: cannot write into {folder} (permission denied)")


def check_writable_file(out: Path, option: str = "--out") -> None:
    """Refuse an output file name that names a folder, lies below a file, or whose folder this
    user cannot write, before any work is done (else the error comes after it)."""
    if out.is_dir():
        raise EvopruneError(f"{option} {out}: is a folder; expected a file name")
    above = next(p for p in out.absolute().parents if p.exists())
    if not above.is_dir():
        raise EvopruneError(f"{option} {out}: {above} is a file, not a folder")
    check_writable(out)
    folder = out.absolute().parent
    _check_makeable(folder, option)
    if folder.is_dir():  # a file can be made there (not so in /proc, on a read-only mount)
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.", suffix=".tmp"):
                pass
        except OSError as exc:
            raise EvopruneError(
                f"{option} {out}: cannot write a file in {folder} ({exc.strerror})"
            ) from None


def new_data(args: argparse.Namespace, ticket: Any, n_out: int) -> tuple[Any, Any]:
    """A --data file for a ticket: every row, its classes numbered as in the ticket's training
    data, its features preprocessed as the training data's were (pixels / 255 for mnist, the
    recorded global or per-feature ranges, or none), unless --normalize/--no-normalize says
    otherwise (said on stderr)."""
    from evoprune.data.newdata import load_like

    args.target = args.target or ticket.dataset.get("target")  # the training CSV's, by default
    job = data_job(args)
    X, y, notes = load_like(job["data"], job.get("target"), ticket.dataset, n_out, args.normalize)
    for note in notes:
        print(note, file=sys.stderr)
    return X, y


def named_dataset(args: argparse.Namespace, trained: dict[str, Any]) -> Dataset:
    """--dataset NAME for a ticket: its class count and scaling by default those the ticket was
    trained with; an explicit --normalize/--no-normalize that differs is said on stderr."""
    from evoprune.data.newdata import trained_normalize
    from evoprune.jobkeys import job_dataset

    job = data_job(args)
    if args.classes is None and args.dataset == trained.get("name") and trained.get("classes"):
        job["classes"] = int(trained["classes"])
    if args.data_dir is None and args.dataset == trained.get("name") and trained.get("data_dir"):
        job["data_dir"] = trained["data_dir"]  # where the ticket's MNIST was found
    if trained.get("name"):
        was = trained_normalize(trained)
        if args.normalize is None:
            job["normalize"] = was
        elif args.normalize != was:
            print(f"note: the ticket was trained on {'scaled' if was else 'raw'} features; "
                  f"{'--normalize' if args.normalize else '--no-normalize'} overrides that",
                  file=sys.stderr)  # fmt: skip
    return job_dataset(job)


def output_classes(model: Any) -> int:
    """A ticket's class count: its network's outputs."""
    from evoprune.nets import ConvNet

    return model.n_classes if isinstance(model, ConvNet) else model[-1].out_features
