"""A found ticket: how to rebuild the random network, plus the mask over it. Safe save/load.

The file is a plain ``.npz`` (never pickle): the packed mask bits, a JSON header with the layer
list, init scheme, seed and activation (so the exact random network is rebuilt), the dataset
config and the metrics, and a SHA-256 checksum over both. A truncated or edited file fails to load with a
clear error.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoprune.archs import ACTIVATIONS
from evoprune.errors import EvopruneError
from evoprune.inputs import check_features
from evoprune.io import finite, jsonable, write_atomic
from evoprune.masks import MaskSpace, pack, sparsity, unpack
from evoprune.nets import ConvNet, build_convnet, build_mlp, rebuild_fields

FORMAT = "evoprune-ticket/1"


@dataclass
class Ticket:
    """A binary mask over a seeded random network.

    `layers` is the MLP layer list, or None for a ticket over a user's own module (then
    `build_model` needs that module back: ``ticket.apply(my_model)``).
    """

    mask: torch.Tensor = field(repr=False)  # (n_bits,) bool, bit order of `MaskSpace`
    layers: list[int] | None
    init: str = "uniform"
    seed: int = 0  # seed of the network's initialisation
    keep: float = 0.5  # kept fraction used by the scaled Kaiming inits
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    method: str = "ga"
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)  # not in the file
    arch: str | None = None  # a named non-MLP architecture ("conv"), then `layers` is None
    # the masked weights in bit order, where the search used a `MaskSpace` of its own (e.g. one
    # layer only); None: every Linear and Conv weight (`space_field`)
    weights: list[str] | None = None
    # the masked weights' shapes, for a ticket over the user's own module (`layout_fields`):
    # `apply` refuses a module of another layout with the same bit count
    shapes: list[list[int]] | None = None
    activation: str = "relu"  # the MLP's nonlinearity between its layers (`ACTIVATIONS`)

    def __post_init__(self) -> None:
        self.mask = _bool_mask(self.mask)

    def __repr__(self) -> str:  # thousands of bits say less than their count and sparsity
        shown = [f"n_bits={self.n_bits}", f"sparsity={self.sparsity:.4g}"]
        shown += [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr]
        return f"Ticket({', '.join(shown)})"

    @property
    def n_bits(self) -> int:
        return int(self.mask.numel())

    @property
    def sparsity(self) -> float:
        return float(sparsity(self.mask))

    def build_model(self) -> nn.Module:
        """The unmasked random network, rebuilt bit for bit from (layers, init, seed)."""
        if self.arch == "conv":
            n_classes = ConvNet.classes_for(self.n_bits, self.weights)
            n_classes = n_classes or (self.dataset or {}).get("classes")
            if not n_classes:
                raise EvopruneError(
                    "ticket: its mask leaves the conv net's head out and it records no class "
                    "count; build the net with build_convnet(n_classes) and use ticket.apply"
                )
            return build_convnet(int(n_classes), self.init, self.seed, self.keep)
        if self.layers is None:
            raise EvopruneError("ticket: no layer list (a custom module); use ticket.apply(model)")
        return build_mlp(self.layers, self.init, self.seed, self.keep, self.activation)

    def space(self, model: nn.Module) -> MaskSpace:
        """The mask's layout over `model`: its maskable weights, or those in `weights`."""
        if self.weights is None:
            return MaskSpace(model)
        names = set(self.weights)
        registered = {id(p): name for name, p in model.named_parameters()}  # as `MaskSpace`

        def listed(_name: str, module: nn.Module) -> bool:
            return registered.get(id(getattr(module, "weight", None))) in names

        try:
            space = MaskSpace(model, is_maskable=listed)
            found = [p.name for p in space.params]
        except EvopruneError:  # none of them
            found = []
        if found != self.weights:
            missing = [n for n in self.weights if n not in found]
            raise EvopruneError(
                f"ticket: the mask covers weights {', '.join(self.weights)}, but the model has "
                + (f"no {missing[0]}" if missing else f"them in another order ({', '.join(found)})")
            )
        return space

    def apply(self, model: nn.Module) -> nn.Module:
        """Multiply `model`'s maskable weights by the mask, in place; returns `model`."""
        space = self.space(model)
        if space.n_bits != self.n_bits:
            raise EvopruneError(
                f"ticket: the mask has {self.n_bits} bits but the model has {space.n_bits} "
                + ("maskable weights" if self.weights is None else "in " + ", ".join(self.weights))
            )
        # the same bit count can hide another layout: [2, 75, 2] and [2, 100, 1] both have 300
        if self.layers is not None and self.weights is None:
            pairs = zip(self.layers[:-1], self.layers[1:], strict=True)
            want = [(n_out, n_in) for n_in, n_out in pairs]
            have = [p.shape for p in space.params]
            if have != want:
                raise EvopruneError(
                    f"ticket: the mask is for layers {self.layers} (weight shapes {want}) but the "
                    f"model's maskable weights have shapes {have}"
                )
        have_shapes = [list(p.shape) for p in space.params]
        if self.shapes is not None and have_shapes != self.shapes:
            raise EvopruneError(
                f"ticket: the mask is for weights of shapes {self.shapes}, but the model's "
                f"maskable weights have shapes {have_shapes}"
            )
        per_param = space.split(self.mask)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in per_param.items():
                params[name].mul_(mask.to(params[name].device, params[name].dtype))
        return model

    def masked_model(self) -> nn.Module:
        """The pruned network: the random network with the mask applied."""
        return self.apply(self.build_model())

    def prepare(self, X: Any) -> torch.Tensor:
        """Raw feature rows (a CSV's columns in the training file's order) as the network's
        input, preprocessed as the training data were (``ticket.dataset``: a file's per-feature
        ranges, the paper's global scaling, MNIST's pixels / 255), as ``evoprune evaluate
        --data`` does. `predict` takes rows already preprocessed; ``predict(prepare(X))``
        takes raw ones, and ``labels_of`` names the classes it returns as the file did.
        """
        from evoprune.data.newdata import features_like

        return features_like(X, self.dataset)

    def labels_of(self, classes: Any) -> np.ndarray:
        """The training file's labels of class numbers (``predict``'s output): class k is the
        k-th of ``dataset["labels"]`` (a file's labels in sorted order); built-in data and a
        ticket without a dataset number their classes 0..C-1, returned as they are.

        >>> t = Ticket(mask=torch.ones(6, dtype=torch.bool), layers=[1, 2, 2],
        ...            dataset={"labels": ["cat", "dog"]})
        >>> t.labels_of(torch.tensor([1, 0, 1])).tolist()
        ['dog', 'cat', 'dog']
        """
        classes = np.asarray(classes.cpu() if isinstance(classes, torch.Tensor) else classes)
        labels = self.dataset.get("labels")
        if labels is None:
            return classes
        if classes.size and (classes.min() < 0 or classes.max() >= len(labels)):
            raise EvopruneError(
                f"classes: expected class numbers 0..{len(labels) - 1}, got {classes.min()}.."
                f"{classes.max()}"
            )
        return np.asarray(labels)[classes]

    def predict(self, X: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
        """The pruned network's class for every row of `X` (in chunks: millions of rows fit):
        rows as the network takes them (raw rows of the user's file: ``prepare`` them first).

        >>> t = Ticket(mask=torch.ones(6, dtype=torch.bool), layers=[1, 2, 2])
        >>> t.predict(torch.zeros(5, 1)).shape
        torch.Size([5])
        """
        model = self.masked_model().eval()
        X = check_features(model, X)  # rows of the network's shape, finite: else one line
        with torch.no_grad():
            return torch.cat([model(X[i : i + chunk]).argmax(1) for i in range(0, len(X), chunk)])

    # -- files ----------------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """What the file holds beside the mask. Timings (``*seconds``, ``*per_second``) stay out
        of it, so the same seed writes the same ticket file, byte for byte."""
        return {
            "format": FORMAT,
            "n_bits": self.n_bits,
            "layers": self.layers,
            "init": self.init,
            "seed": self.seed,
            "keep": self.keep,
            "dataset": self.dataset,
            "metrics": {k: v for k, v in self.metrics.items() if not is_timing(k)},
            "method": self.method,
            **({"arch": self.arch} if self.arch is not None else {}),  # MLP headers unchanged
            **({"weights": self.weights} if self.weights is not None else {}),
            **({"shapes": self.shapes} if self.shapes is not None else {}),
            **({"activation": self.activation} if self.activation != "relu" else {}),
        }

    def save(self, path: str | Path) -> Path:
        """Write the ticket atomically to `path` (``.npz``)."""
        packed = np.frombuffer(pack(self.mask), dtype=np.uint8)
        header = self._header_json()
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            mask=packed,
            header=np.frombuffer(header, dtype=np.uint8),
            checksum=np.frombuffer(_checksum(packed.tobytes(), header).encode(), dtype=np.uint8),
        )
        return write_atomic(path, buf.getvalue())

    def _header_json(self) -> bytes:
        """The header as JSON; numpy and torch values become plain numbers and lists."""
        for part in ("dataset", "metrics"):
            for key, value in getattr(self, part).items():
                try:
                    json.dumps(value, default=jsonable)
                except (TypeError, ValueError):
                    raise EvopruneError(
                        f"ticket.{part}[{key!r}]: expected a JSON value (number, string, list, "
                        f"dict, or a numpy/torch number or array), got {type(value).__name__}"
                    ) from None
        # strict JSON: a diverged run's NaN loss is written as null, as in result.json
        header = finite(self.header())
        return json.dumps(header, sort_keys=True, allow_nan=False, default=jsonable).encode()

    @classmethod
    def load(cls, path: str | Path) -> Ticket:
        """Read a ticket; a missing, truncated, tampered or foreign file is an `EvopruneError`."""
        path = ticket_path(path)
        if not path.is_file():
            raise EvopruneError(f"{path}: no such ticket file")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if not {"mask", "header", "checksum"} <= set(npz.files):
                    raise EvopruneError(f"{path}: not an evoprune ticket (missing arrays)")
                packed, header = npz["mask"].tobytes(), npz["header"].tobytes()
                stored = npz["checksum"].tobytes().decode()
        except EvopruneError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise EvopruneError(
                f"{path}: not a readable ticket file ({type(exc).__name__})"
            ) from None
        if _checksum(packed, header) != stored:
            raise EvopruneError(
                f"{path}: checksum mismatch, the ticket file was altered or damaged"
            )
        meta = _read_header(path, header)
        if len(packed) != (need := -(-meta["n_bits"] // 8)):
            raise EvopruneError(
                f"{path}: the mask has {len(packed)} bytes, where the header's n_bits "
                f"{meta['n_bits']} needs {need}"
            )
        return cls(
            mask=unpack(packed, meta["n_bits"]),
            layers=meta["layers"],
            init=meta["init"],
            seed=meta["seed"],
            keep=meta["keep"],
            dataset=meta["dataset"],
            metrics=meta["metrics"],
            method=meta["method"],
            arch=meta.get("arch"),
            weights=meta.get("weights"),
            shapes=meta.get("shapes"),
            activation=meta.get("activation", "relu"),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


# the header's fields: what each must be, as a test and as words for the error
_HEADER_FIELDS: dict[str, tuple[Any, str]] = {
    "n_bits": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "layers": (lambda v: v is None or _ints(v), "a list of integers or null"),
    "init": (lambda v: isinstance(v, str), "a string"),
    "seed": (_is_int, "an integer"),
    "keep": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "dataset": (lambda v: isinstance(v, dict), "an object"),
    "metrics": (lambda v: isinstance(v, dict), "an object"),
    "method": (lambda v: isinstance(v, str), "a string"),
}
_OPTIONAL_FIELDS: dict[str, tuple[Any, str]] = {
    "arch": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "weights": (
        lambda v: v is None or (isinstance(v, list) and all(isinstance(n, str) for n in v)),
        "a list of weight names or null",
    ),
    "shapes": (
        lambda v: v is None or (isinstance(v, list) and all(_ints(s) for s in v)),
        "a list of weight shapes or null",
    ),
    "activation": (lambda v: v in ACTIVATIONS, "one of " + ", ".join(ACTIVATIONS)),
}


def _read_header(path: Path, header: bytes) -> dict[str, Any]:
    """The header's JSON, every field checked: a hand-made or foreign file is one line."""
    try:
        meta = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        raise EvopruneError(f"{path}: the ticket header is not JSON") from None
    if not isinstance(meta, dict):
        raise EvopruneError(f"{path}: the ticket header is not a JSON object")
    if meta.get("format") != FORMAT:
        raise EvopruneError(f"{path}: unknown ticket format {meta.get('format')!r}")
    for name, (ok, expected) in {**_HEADER_FIELDS, **_OPTIONAL_FIELDS}.items():
        if name not in meta and name in _HEADER_FIELDS:
            raise EvopruneError(f"{path}: header field {name!r} is missing")
        if name in meta and not ok(meta[name]):
            raise EvopruneError(
                f"{path}: header field {name!r}: expected {expected}, got {meta[name]!r}"
            )
    return meta


def space_field(model: nn.Module, space: MaskSpace | None) -> dict[str, Any]:
    """The `Ticket` field naming the masked weights, where `space` is not `model`'s default
    (every Linear and Conv weight): then ``ticket.apply`` and ``masked_model`` follow it."""
    if space is None:
        return {}
    names = [p.name for p in space.params]
    return {} if names == [p.name for p in MaskSpace(model).params] else {"weights": names}


def layout_fields(model: nn.Module, space: MaskSpace | None) -> dict[str, Any]:
    """The `Ticket` fields that place a mask over `model`: how to rebuild it (`rebuild_fields`),
    the masked weights (`space_field`), and, for the user's own module, which the ticket is
    applied to rather than rebuilt, the masked weights' shapes."""
    fields = {**rebuild_fields(model), **space_field(model, space)}
    if fields["layers"] is None and fields.get("arch") is None:
        fields["shapes"] = [list(p.shape) for p in (space or MaskSpace(model)).params]
    return fields


def _bool_mask(mask: Any) -> torch.Tensor:
    """`mask` as a one-dimensional bool tensor: bool or exactly-0/1 numbers (tensor, array or
    list) are converted, anything else is an error here rather than a wrong network later."""
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.ndim == 1:
        return mask
    try:
        values = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    except (TypeError, ValueError, RuntimeError):
        raise EvopruneError(
            f"mask: expected a 1-D bool or 0/1 tensor or array, got {type(mask).__name__}"
        ) from None
    if values.ndim != 1 or values.numel() == 0:
        raise EvopruneError(
            f"mask: expected a 1-D bool or 0/1 tensor or array of shape (n_bits,), "
            f"got shape {tuple(values.shape)}"
        )
    if values.dtype != torch.bool:
        if values.is_complex():
            raise EvopruneError(f"mask: expected bool or 0/1 values, got dtype {values.dtype}")
        bad = values[(values != 0) & (values != 1)]
        if len(bad):
            raise EvopruneError(f"mask: expected only 0/1 or bool values, got {bad[0].item()!r}")
        values = values != 0
    return values


def is_timing(key: str) -> bool:
    """A metric that measures time (it differs between two runs of the same seed)."""
    return key.endswith(("seconds", "per_second"))


def _checksum(packed: bytes, header: bytes) -> str:
    return hashlib.sha256(packed + b"\0" + header).hexdigest()


def ticket_path(path: str | Path) -> Path:
    """`path`, or the ticket.npz in it when it is a run folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    if not (path / "ticket.npz").is_file():
        raise EvopruneError(
            f"{path}: a folder without a ticket.npz (search and edge-popup runs have one; "
            "prune, selection-prune, backprop and the studies' runs do not)"
        )
    return path / "ticket.npz"


def export_state_dict(ticket: Ticket, path: str | Path) -> Path:
    """Save the masked network's ``state_dict`` (loadable with ``torch.load(weights_only=True)``)."""
    state = {k: v.contiguous() for k, v in ticket.masked_model().state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return write_atomic(path, buf.getvalue())
