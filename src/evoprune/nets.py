"""Random networks: the MLP family of the paper and the weight-initialisation schemes.

Architectures (Schönberger et al. 2024, arXiv 2411.04658, Sec. 4): A=[in,20,out],
B=[in,75,out], C=[in,100,out], D=[in,50,50,out]; hidden layers use ReLU (or another of
`ACTIVATIONS`), the output layer gives plain logits. Initialisations:

- ``uniform``: weights and biases U[-1, 1] (the paper's default, its best for the GA).
- ``kaiming-normal`` / ``signed-constant``: as in Ramanujan et al. 2020 (arXiv 1911.13299,
  "What's hidden in a randomly weighted neural network?"), with the fan scaled by the keep
  fraction k (fan_in * k) and the activation's gain (`GAINS`); biases zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from evoprune.archs import ACTIVATIONS, ARCHS, CONV_ARCHS, INITS
from evoprune.errors import EvopruneError
from evoprune.masks import MASKABLE_TYPES
from evoprune.seeding import torch_generator


def parse_arch(spec: str | Sequence[int], n_in: int, n_out: int) -> list[int]:
    """The full layer list ``[in, h1, ..., out]`` for a shorthand (``"B"``) or an explicit list.

    >>> parse_arch("B", 2, 2)
    [2, 75, 2]
    >>> parse_arch("2,75,2", 2, 2)
    [2, 75, 2]
    """
    if isinstance(spec, str):
        name = spec.strip()
        if name.upper() in ARCHS:
            return [n_in, *ARCHS[name.upper()], n_out]
        try:  # an empty part ("2,,2") is a typo, not a layer to drop
            layers = [int(part) for part in name.split(",")]
        except ValueError:
            raise EvopruneError(
                f"arch: expected one of {', '.join(ARCHS)} or a list like '2,75,2', got {spec!r}"
            ) from None
    elif isinstance(spec, Sequence) and all(
        isinstance(w, int | np.integer) and not isinstance(w, bool) for w in spec
    ):
        layers = [int(w) for w in spec]
    else:  # a spec's `arch: [2, 75, 2]` is three architectures 2, 75 and 2
        raise EvopruneError(
            f"arch: expected one of {', '.join(ARCHS)} or a layer list like '2,75,2' (in a spec's "
            f'grid, quote it: arch: ["2,75,2"]), got {spec!r}'
        )
    if len(layers) < 2 or any(w < 1 for w in layers):
        raise EvopruneError(f"arch: expected at least two positive layer widths, got {layers}")
    if layers[0] != n_in or layers[-1] != n_out:
        raise EvopruneError(
            f"arch: {layers} does not fit the data: it has {n_in} features and {n_out} classes, "
            f"so the list must start with {n_in} and end with {n_out}"
        )
    return layers


# the module each of `ACTIVATIONS` puts between an MLP's layers (`evoprune.fastmlp` applies them
# itself, by these names)
NONLINEARITIES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}

# The scaled Kaiming inits' gain per activation: torch's `calculate_gain` where it has one;
# GELU, which it lacks, takes ReLU's (the two agree away from zero).
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, "gelu": math.sqrt(2.0)}


def check_activation(activation: object, arch: object = None) -> str:
    """`activation` if it is one of `ACTIVATIONS` (and ReLU, the conv net's, where `arch` names
    the conv net), else one line saying what is expected."""
    if activation not in ACTIVATIONS:
        raise EvopruneError(
            f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    if is_conv_arch(arch) and activation != "relu":
        raise EvopruneError(f"activation: the conv net uses relu, got {activation!r}")
    return str(activation)


class MLP(nn.Sequential):
    """Linear layers with ReLU (or `activation`) between them and plain logits out (no
    softmax)."""

    def __init__(
        self,
        layers: Sequence[int],
        device: torch.device | str | None = None,
        activation: str = "relu",
    ):
        layers = _check_layers(layers)
        kind = NONLINEARITIES[check_activation(activation)]
        modules: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
            modules.append(nn.Linear(fan_in, fan_out, bias=True, device=device))
            if i < len(layers) - 2:
                modules.append(kind())
        super().__init__(*modules)
        self.layers = list(layers)
        self.activation = activation

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]


def _check_layers(layers: Sequence[int]) -> list[int]:
    if isinstance(layers, str) or not all(
        isinstance(w, int | np.integer) and not isinstance(w, bool) for w in layers
    ):
        raise EvopruneError(
            f"layers: expected a list of layer widths like [2, 75, 2], got {layers!r} "
            "(for a name like 'B': build_network('B', n_in, n_out))"
        )
    if len(layers) < 2 or any(w < 1 for w in layers):
        raise EvopruneError(f"layers: expected at least two positive widths, got {list(layers)}")
    return [int(w) for w in layers]


def initialise(model: nn.Module, init: str, seed: int, keep: float = 0.5) -> nn.Module:
    """Re-draw every Linear/Conv weight and bias of `model` in place from `seed`.

    `keep` is the kept fraction k used by the scaled Kaiming schemes (ignored by ``uniform``).
    The model remembers the draw (``model.random_init``), so a ticket found on it records
    what rebuilds the network.
    """
    if init not in INITS:
        raise EvopruneError(f"init: expected one of {', '.join(INITS)}, got {init!r}")
    if not 0.0 < keep <= 1.0:
        raise EvopruneError(f"keep: expected a fraction in (0, 1], got {keep}")
    gen = torch_generator(seed, "init")
    gain = GAINS[model.activation if isinstance(model, MLP) else "relu"]
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, MASKABLE_TYPES):
                continue
            weight = module.weight
            if init == "uniform":
                weight.uniform_(-1.0, 1.0, generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-1.0, 1.0, generator=gen)
                continue
            fan_in = weight[0].numel()  # in_features * kernel size
            std = gain / math.sqrt(fan_in * keep)
            if init == "kaiming-normal":
                weight.normal_(0.0, std, generator=gen)
            else:  # signed-constant: +-std with a random sign
                signs = torch.randint(0, 2, weight.shape, generator=gen).to(weight.dtype) * 2 - 1
                weight.copy_(signs * std)
            if module.bias is not None:
                module.bias.zero_()
    # torch types Module.__setattr__ for tensors and modules only; a plain attribute is fine
    drawn = {"init": init, "seed": int(seed), "keep": float(keep)}
    model.random_init = drawn  # type: ignore[assignment]
    return model


def rebuild_fields(model: nn.Module) -> dict[str, Any]:
    """The `Ticket` fields that rebuild `model` bit for bit: its layer list or named
    architecture, and the init, seed and keep it was drawn with. A module that was not drawn
    by `initialise` (the user's own) gets ``layers=None``: its ticket is applied to it."""
    drawn = getattr(model, "random_init", None)
    if drawn is None:
        return {"layers": None}
    again: nn.Module
    if isinstance(model, MLP):
        fields = {"layers": list(model.layers), **drawn}
        if model.activation != "relu":  # a ReLU net's ticket reads as before
            fields["activation"] = model.activation
        again = build_mlp(model.layers, **drawn, activation=model.activation)
    elif isinstance(model, ConvNet):
        fields = {"layers": None, "arch": ConvNet.arch, **drawn}
        again = build_convnet(model.n_classes, **drawn)
    else:
        return {"layers": None}
    mine, drawn_again = model.state_dict(), again.state_dict()
    if mine.keys() != drawn_again.keys() or not all(
        torch.equal(mine[k].detach().cpu(), drawn_again[k]) for k in mine
    ):  # changed since it was drawn (loaded, trained): the seed no longer rebuilds it
        return {"layers": None}
    return fields


def build_mlp(
    layers: Sequence[int],
    init: str = "uniform",
    seed: int = 0,
    keep: float = 0.5,
    activation: str = "relu",
) -> MLP:
    """The fixed random MLP for `layers`, rebuilt bit for bit from (`init`, `seed`), with
    `activation` between its layers.

    >>> net = build_mlp([2, 75, 2], seed=0)
    >>> net(torch.zeros(1, 2)).shape
    torch.Size([1, 2])
    """
    # built on the meta device, then drawn from the seed alone: torch's global random stream,
    # which nn.Linear's own init would draw from, is left as it was
    model = MLP(layers, device="meta", activation=activation).to_empty(device="cpu")
    initialise(model, init, seed, keep)
    model.requires_grad_(False)
    return model


# -- a convolutional net for 28x28 images (MNIST) ---------------------------------------------


class ConvNet(nn.Module):
    """conv 1->32 5x5, ReLU, max-pool 2; conv 32->64 5x5, ReLU, max-pool 2; Linear 1024->classes.

    Input: flattened 28x28 single-channel images ``(n, 784)`` (or ``(n, 1, 28, 28)``). Maskable
    weights: 800 + 51,200 + 10,240 = 62,240 for ten classes; biases never masked.
    """

    arch = "conv"

    def __init__(self, n_classes: int = 10, device: torch.device | str | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, device=device)  # 28 -> 24, pooled to 12
        self.conv2 = nn.Conv2d(32, 64, 5, device=device)  # 12 -> 8, pooled to 4
        self.fc = nn.Linear(64 * 4 * 4, n_classes, device=device)
        self.n_classes = n_classes

    @staticmethod
    def classes_for(n_bits: int, weights: Sequence[str] | None = None) -> int | None:
        """The class count of the conv net whose mask has `n_bits` bits over `weights` (default
        all three): conv1's 32 * 25 and conv2's 64 * 32 * 25 weights, then 1024 per class in
        the head; None when the mask leaves the head out."""
        if weights is not None and "fc.weight" not in weights:
            return None
        convs = {"conv1.weight": 32 * 25, "conv2.weight": 64 * 32 * 25}
        covered = sum(n for name, n in convs.items() if weights is None or name in weights)
        return (n_bits - covered) // (64 * 4 * 4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The first stage: pooled conv1 maps ``(n, 32, 12, 12)``."""
        x = x.reshape(-1, 1, 28, 28)
        return torch.max_pool2d(torch.relu(self.conv1(x)), 2)

    def head_input(self, a1: torch.Tensor) -> torch.Tensor:
        """Pooled conv2 maps, flattened: ``(n, 1024)`` (channel-major, 16 per channel)."""
        return torch.max_pool2d(torch.relu(self.conv2(a1)), 2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head_input(self.features(x)))


def build_convnet(
    n_classes: int = 10, init: str = "uniform", seed: int = 0, keep: float = 0.5
) -> ConvNet:
    """The fixed random `ConvNet`, rebuilt bit for bit from (`init`, `seed`).

    >>> net = build_convnet(seed=0)
    >>> net(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    """
    model = ConvNet(n_classes, device="meta").to_empty(device="cpu")  # see build_mlp
    initialise(model, init, seed, keep)
    model.requires_grad_(False)
    return model


def is_conv_arch(spec: object) -> bool:
    return isinstance(spec, str) and spec.strip().lower() in CONV_ARCHS


def build_network(
    spec: str | Sequence[int],
    n_in: int,
    n_out: int,
    init: str = "uniform",
    seed: int = 0,
    keep: float = 0.5,
    activation: str = "relu",
) -> tuple[nn.Module, list[int] | str]:
    """The random network an architecture name or layer list describes (an MLP with
    `activation` between its layers), and its description for result.json (the layer list, or
    the name of a conv net).

    >>> build_network("B", 2, 2)[1]
    [2, 75, 2]
    >>> build_network("conv", 784, 10)[1]
    'conv'
    """
    if is_conv_arch(spec):
        if n_in != 784:
            raise EvopruneError(
                f"arch: the conv net takes 28x28 single-channel images (784 features), "
                f"the data has {n_in}"
            )
        check_activation(activation, spec)
        return build_convnet(n_out, init, seed, keep), "conv"
    layers = parse_arch(spec, n_in, n_out)
    return build_mlp(layers, init, seed, keep, activation), layers
