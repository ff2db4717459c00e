"""Atomic file writes and run provenance (versions, git revision).

A file written here is either the old one or the complete new one, never half of either:
we write a temp file in the same folder and `os.replace` it into place.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import platform
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from evoprune.errors import EvopruneError


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None] | bytes | str) -> Path:
    """Write `path` atomically from bytes, text, or a callback given the open binary file."""
    path = Path(path)
    if path.is_dir():
        raise EvopruneError(f"{path}: is a folder; expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise EvopruneError(f"{path.parent}: exists and is not a folder") from None
    except PermissionError:
        raise EvopruneError(
            f"{path}: cannot write into {path.parent} (permission denied)"
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(write, str):
                fh.write(write.encode())
            elif isinstance(write, bytes):
                fh.write(write)
            else:
                write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def checkpoint_bytes(header: dict[str, Any], arrays: dict[str, Any]) -> bytes:
    """A checkpoint ``.npz``: the JSON `header` (numpy values allowed) beside numpy `arrays`,
    compressed, no pickle; `read_checkpoint` reads it back."""
    import numpy as np

    buf = io.BytesIO()
    raw = json.dumps(header, default=jsonable).encode()
    np.savez_compressed(buf, header=np.frombuffer(raw, np.uint8), **arrays)
    return buf.getvalue()


def read_checkpoint(
    path: Path, fmt: str, fingerprint: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, arrays)`` of a checkpoint ``.npz`` (a JSON header beside numpy arrays, no
    pickle), checked to be of format `fmt` and written for the search `fingerprint` describes
    (the GA's and the local search's checkpoints)."""
    header, arrays = _checkpoint_file(path, header_only=False)
    if header.get("format") != fmt:
        raise EvopruneError(f"{path}: unknown checkpoint format {header.get('format')!r}")
    saved = header.get("fingerprint", {})
    diff = _differences(fingerprint, saved)
    if diff:
        raise EvopruneError(
            f"{path}: the checkpoint belongs to a different search (differs in: {', '.join(diff)}); "
            "resume with the settings it was started with, delete it to start afresh, or use "
            "another --out (in Python: another checkpoint, or resume=False)"
        )
    return header, arrays


def _checkpoint_file(path: Path, header_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON header and (unless `header_only`) the arrays of the checkpoint at `path`."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = ["header"] if header_only else npz.files
            arrays = {name: npz[name] for name in names}
        return json.loads(arrays.pop("header").tobytes()), arrays
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        raise EvopruneError(
            f"{path}: not a readable checkpoint; delete it to start afresh, or choose another --out"
        ) from None


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ, a level deeper where both are dicts ("config.population")."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if _canonical(x) == _canonical(y):
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> Path:
    return write_atomic(path, json_text(data))


def json_text(data: Any) -> str:
    """`data` as strict JSON, indented: a NaN or infinite number becomes null (Python's
    ``NaN`` and ``Infinity`` are not JSON, and other readers refuse them)."""
    return json.dumps(finite(data), indent=2, allow_nan=False, default=jsonable) + "\n"


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite number (in dicts, lists, numpy arrays) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return finite(value.tolist())
    return value


def jsonable(obj: Any) -> Any:
    """`json.dumps`'s ``default=`` for numpy values and paths."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions() -> dict[str, str]:
    """Versions of evoprune and the libraries a result depends on."""
    import numpy
    import sklearn
    import torch

    from evoprune import __version__

    return {
        "evoprune": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "numba": _installed("numba"),  # the memetic and local search's kernels
        "python": platform.python_version(),
    }


def _installed(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """The computer a result was measured on. Times depend on it, and so may the numbers: a
    CPU with other vector instructions rounds float32 products differently, and PyTorch
    promises bitwise reproducibility only on one platform, so a tie may break the other way
    and the search go elsewhere (the paper's GA on digits-10 B, seed 1: 95.6% test accuracy
    on one 2-core machine, 95.1% on another). On one machine the same seed gives the same
    ticket, bit for bit."""
    import torch

    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        # the process's torch threads (--threads); a method that trains on a count of its own
        # records it beside (edge-popup's hyperparameters, selection's and train-weights' threads)
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def git_revision() -> str:
    """The git commit of the evoprune source this process runs, with ``-dirty`` if the checkout
    has changes to tracked files or new files in the package; ``"unknown"`` where the package
    is no file of a checkout (an installed copy, also one in a git-ignored ``.venv`` inside
    another project, whose commit says nothing of this code).

    Read once per process, at its first use: `run_job` reads it before the work, so a commit
    made while a run works is not taken for the code it ran (that was imported at its start).
    """
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5)

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return "unknown"
        rev = git("rev-parse", "HEAD")
        if rev.returncode != 0:
            return "unknown"
        changed = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        new = git("status", "--porcelain", "--untracked-files=normal", "--", ".").stdout.strip()
        return rev.stdout.strip() + ("-dirty" if changed or new else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_identity() -> dict[str, Any]:
    """The code a process runs: its git revision and library versions. A checkpoint keeps one
    per run that wrote it (`code_lineage`), so a run resumed under other code says so."""
    return {"git_revision": git_revision(), "versions": versions()}


def code_lineage(earlier: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`earlier` (the code of the runs a checkpoint was resumed through) and this process's,
    which is added unless it is the last already."""
    now = code_identity()
    return [*earlier] if earlier and earlier[-1] == now else [*earlier, now]


def resumed_from(paths: list[Path]) -> list[dict[str, Any]]:
    """The code, other than this process's, of the runs that wrote the checkpoints at `paths`
    (those that exist), each once: what a resumed run records as ``resumed_from``. A file that
    cannot be read is left to the search's own reading, which says what is wrong with it."""
    now, found = code_identity(), []
    for path in paths:
        try:
            header, _ = _checkpoint_file(path, header_only=True)
        except EvopruneError:
            continue
        for code in header.get("code", []):
            if code != now and code not in found:
                found.append(code)
    return found


def provenance() -> dict[str, Any]:
    """What every result records next to its numbers."""
    return {"versions": versions(), "git_revision": git_revision(), "machine": machine()}
