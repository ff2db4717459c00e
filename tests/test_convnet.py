"""The conv net: its size, batched evaluation against a plain forward, edge-popup, tickets, the
GA's general evaluator, and its exact local search."""

from __future__ import annotations

import pytest
import torch

import evoprune
from evoprune.baselines.edge_popup import edge_popup
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig
from evoprune.local import conv as conv_search
from evoprune.local.conv import ConvSearchConfig, conv_local_search
from evoprune.masks import MaskSpace
from evoprune.nets import ConvNet, build_convnet, build_network
from evoprune.scores import forward_one, score_fit
from evoprune.ticket import Ticket

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]  # fmt: skip


def images(n, seed, classes=10):
    gen = torch.Generator().manual_seed(seed)
    X = (torch.rand(n, 784, generator=gen) - 0.6).clamp(min=0)  # mostly zeros, like MNIST
    y = torch.randint(0, classes, (n,), generator=gen)
    return X, y


def test_the_conv_net_has_62k_maskable_weights():
    net = build_convnet(10, "signed-constant", seed=0)
    space = MaskSpace(net)
    assert space.n_bits == 800 + 51_200 + 10_240 == 62_240
    assert [p.name for p in space.params] == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert net(torch.zeros(3, 784)).shape == (3, 10)
    model, described = build_network("CONV", 784, 10, "uniform", 1)
    assert isinstance(model, ConvNet) and described == "conv"


def test_conv_net_on_non_image_data_is_an_error():
    with pytest.raises(evoprune.EvopruneError, match="784 features"):
        build_network("conv", 64, 10)


def test_batched_evaluation_equals_a_plain_forward():
    net = build_convnet(10, "kaiming-normal", seed=2)
    X, y = images(48, 2)
    ev = Evaluator(net, X, y, "loss", cache=False, metrics=("loss", "accuracy"))
    masks = torch.rand(5, ev.n_bits, generator=torch.Generator().manual_seed(2)) < 0.5
    logits = ev.logits(masks)  # (5, 48, 10)
    plain = torch.stack([forward_one(net, ev.space, m, X) for m in masks])
    assert torch.allclose(logits, plain, rtol=1e-4, atol=1e-4)
    metrics = ev.evaluate(masks)
    accuracy = (plain.argmax(2) == y).double().mean(1)
    assert torch.allclose(metrics["accuracy"], accuracy)


def test_edge_popup_and_the_ga_run_on_the_conv_net():
    net = build_convnet(10, "signed-constant", seed=3)
    X, y = images(64, 3)
    found = edge_popup(net, X[:32], y[:32], sparsity=0.5, epochs=1, batch_size=32, seed=3)
    space = MaskSpace(net)
    for name, part in space.split(found.mask).items():  # 50% removed in every layer
        assert abs(part.float().mean().item() - 0.5) < 1e-3, name
    cfg = GAConfig(population=4, min_generations=1, max_generations=1, post_prune=False)
    ticket = evoprune.search(net, X[:32], y[:32], "loss", cfg)
    assert ticket.mask.shape == (62_240,) and 0 <= ticket.metrics["train_accuracy"] <= 1


def test_a_conv_ticket_round_trips(tmp_path):
    net = build_convnet(10, "signed-constant", seed=4, keep=0.5)
    mask = torch.rand(62_240, generator=torch.Generator().manual_seed(4)) < 0.5
    t = Ticket(mask=mask, layers=None, init="signed-constant", seed=4, arch="conv")
    t.save(tmp_path / "t.npz")
    back = Ticket.load(tmp_path / "t.npz")
    assert back.arch == "conv" and torch.equal(back.mask, mask)
    X, _ = images(8, 4)
    rebuilt = back.masked_model()
    assert torch.equal(rebuilt(X), t.apply(net)(X))


@pytest.mark.parametrize("device", DEVICES)
def test_conv_local_search_scores_flips_exactly_and_only_improves(device):
    net = build_convnet(10, "signed-constant", seed=5)
    X, y = images(24, 5)
    cfg = ConvSearchConfig(max_passes=1, rank_samples=24, seed=5, device=device)
    X_test, y_test = images(30, 50)
    res = conv_local_search(net, X, y, cfg, X_test=X_test, y_test=y_test)
    test_logits = forward_one(net, MaskSpace(net), res.mask, X_test)
    test_acc = float((test_logits.argmax(1) == y_test).double().mean())
    assert res.history[-1]["test_accuracy"] == pytest.approx(test_acc)
    losses = [res.metrics["start_train_loss"]] + [h["train_loss"] for h in res.history]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))  # every pass improves
    # the final loss is that of a plain forward of the returned mask
    plain = torch.nn.functional.cross_entropy(
        forward_one(net, MaskSpace(net), res.mask, X).double(), y
    )
    assert abs(float(plain) - res.metrics["train_loss"]) < 1e-4
    # conv1 stays at its random start mask
    start = torch.rand(62_240, generator=conv_search.torch_generator(5, "local/conv")) < 0.5
    assert torch.equal(res.mask[:800], start[:800])
    again = conv_local_search(net, X, y, cfg)
    assert torch.equal(again.mask, res.mask)  # same seed, same mask


def _random_state(seed, n, temperature=1.0):
    """A conv net of `seed`, `n` images, a random half mask and the search's state on them."""
    net = build_convnet(10, "signed-constant", seed=seed)
    X, y = images(n, seed)
    space = MaskSpace(net)
    mask = torch.rand(space.n_bits, generator=torch.Generator().manual_seed(seed)) < 0.5
    parts = space.split(mask)
    masks = [parts[f"{name}.weight"].clone() for name in ("conv1", "conv2", "fc")]
    state = conv_search._State(net, X, y, masks, torch.device("cpu"), temperature)
    return net, X, y, space, mask, state


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_single_flip_scores_equal_a_recompute(temperature):
    net, X, y, space, mask, state = _random_state(6, 24, temperature)

    def loss_of(m):  # the cross-entropy of logits / temperature
        return float(
            torch.nn.functional.cross_entropy(
                forward_one(net, space, m, X).double() / temperature, y, reduction="sum"
            )
        )

    base = loss_of(mask)
    head = state.head_deltas(3)
    rows = torch.arange(24)
    conv = state.channel_deltas(7, rows, torch.nn.functional.unfold(state.a1_32, 5), 8)
    for j in (0, 100, 777):
        flipped = mask.clone()
        bit = 800 + 51_200 + 3 * 1024 + j
        flipped[bit] = ~flipped[bit]
        assert abs(float(head[j]) - (loss_of(flipped) - base)) < 1e-3
        flipped = mask.clone()
        bit = 800 + 7 * 800 + j
        flipped[bit] = ~flipped[bit]
        assert abs(float(conv[j]) - (loss_of(flipped) - base)) < 1e-2


@pytest.mark.slow
def test_search_variant_local_on_the_conv_net_end_to_end(tmp_path, capsys):
    import json

    import numpy as np

    from evoprune.cli import main

    X, y = images(48, 7, classes=3)
    np.savez(tmp_path / "tiny.npz", X=X.numpy(), y=y.numpy())
    out = tmp_path / "run"
    args = ["search", "--data", str(tmp_path / "tiny.npz"), "--no-normalize", "--arch", "conv",
            "--variant", "local", "--objective", "loss", "--init", "signed-constant",
            "--max-passes", "1", "--local-density", "0.5", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["arch"] == "conv" and result["variant"] == "local"
    assert result["ranking"] == "none" and 0.0 < result["sparsity"] < 1.0
    ticket = Ticket.load(out / "ticket.npz")
    assert ticket.arch == "conv" and ticket.n_bits == 800 + 51_200 + 3 * 1024
    capsys.readouterr()
    assert main(["evaluate", str(out / "ticket.npz")]) == 0
    assert f"test acc {result['test_accuracy']:.4f}" in capsys.readouterr().out


def test_test_rows_without_their_labels_are_refused_before_the_search():
    # X_test alone ended a whole pass later in a TypeError (None labels); score_fit likewise
    X, y = images(8, 9)
    net = build_convnet(10, "signed-constant", seed=9)
    with pytest.raises(evoprune.EvopruneError, match="X_test and y_test: give both or neither"):
        conv_local_search(net, X, y, ConvSearchConfig(max_passes=1), X_test=X)
    with pytest.raises(evoprune.EvopruneError, match="X_test and y_test: give both or neither"):
        score_fit(net, torch.ones(MaskSpace(net).n_bits, dtype=torch.bool), X, y, y_test=y)


def test_the_conv_local_search_leaves_autograd_out():
    """A ConvNet a user builds has weights that require grad: the search's state must not
    record its steps for autograd (3.3x the memory before), and gives the same mask."""
    X, y = images(24, 7)
    cfg = ConvSearchConfig(max_passes=1, rank_samples=24, seed=7)
    net = build_convnet(10, "signed-constant", seed=7)
    plain = conv_local_search(net, X, y, cfg)
    state = conv_search._State(net.requires_grad_(True), X, y,
                               [torch.ones(s) for s in ((32, 1, 5, 5), (64, 32, 5, 5), (10, 1024))],
                               torch.device("cpu"))  # fmt: skip
    assert not any(t.requires_grad for t in (state.w1, state.w2, state.w3, state.a1))
    assert torch.equal(conv_local_search(net, X, y, cfg).mask, plain.mask)


def test_local_settings_the_conv_search_does_not_read_are_refused():
    X, y = images(24, 8)
    net = build_convnet(10, "signed-constant", seed=8)
    cfg = GAConfig(variant="local", max_passes=1, kicks=3)
    with pytest.raises(evoprune.EvopruneError, match="kicks is not read by its search"):
        evoprune.search(net, X, y, "loss", cfg)
    # ranking "none" (exact scores only) is what it does: the scale spec's conv arm says so
    plain = GAConfig(variant="local", max_passes=1, ranking="none")
    assert evoprune.search(net, X, y, "loss", plain).metrics["ranking"] == "none"


def test_a_set_of_flips_is_tried_at_its_exact_loss():
    """`try_head` and `try_channel` give the loss of a plain forward of the mask with those
    bits flipped (conv2's bit j is input channel j // 25, row j % 25 // 5, column j % 5)."""
    net, X, y, space, mask, state = _random_state(7, 16)

    def loss_of(bits):
        flipped = mask.clone()
        flipped[bits] = ~flipped[bits]
        logits = forward_one(net, space, flipped, X).double()
        return float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))

    flat = torch.tensor([1, 7, 33, 509, 798])  # rows and columns apart
    loss, _ = state.try_channel(5, flat)
    assert float(loss) == pytest.approx(loss_of(800 + 5 * 800 + flat), rel=1e-5)
    inputs = torch.tensor([0, 17, 1000])
    loss, _ = state.try_head(2, inputs)
    assert float(loss) == pytest.approx(loss_of(800 + 51_200 + 2 * 1024 + inputs), rel=1e-5)


def test_a_unit_accepts_improvements_and_free_removals_only():
    """`_descend_unit` tries the flips that lower the loss and the removals that leave it
    alike, and accepts a set only when the loss falls, or stays and every flip removes a
    weight: an addition that changes nothing, alone or in a set, is never taken."""

    def walk(deltas, mask_row, loss_of):
        flipped = set()

        def apply_fn(chosen, found):
            flipped.update(chosen.tolist())
            apply_fn.current = found

        apply_fn.current = loss_of(set())

        def try_fn(chosen):
            loss = loss_of(flipped | set(chosen.tolist()))
            return torch.tensor(loss), loss

        conv_search._descend_unit(torch.tensor(deltas), torch.tensor(mask_row), 4, try_fn,
                                  apply_fn, 10)  # fmt: skip
        return flipped

    # bit 0 adds a weight and changes nothing; bit 1 (an addition) improves
    assert walk([0.0, -1.0], [False, False], lambda s: 10.0 - (1 in s)) == {1}
    # bit 0 (an addition) improves alone, but not beside the removal bit 1: the two together
    # are not taken at an unchanged loss, bit 0 alone is, and bit 1 after it would raise it
    losses = {(): 10.0, (0,): 9.0, (1,): 10.0, (0, 1): 10.0}
    assert walk([-1.0, 0.0], [False, True], lambda s: losses[tuple(sorted(s))]) == {0}


def test_the_conv_search_stops_after_a_pass_without_an_accepted_flip(monkeypatch):
    """A pass that accepts nothing ends the search before `max_passes`: here the units accept
    nothing from the second pass on (10 head units and 64 channels a pass)."""
    real, calls = conv_search._descend_unit, []

    def first_pass_only(*args):
        calls.append(1)
        return real(*args) if len(calls) <= 74 else 0

    monkeypatch.setattr(conv_search, "_descend_unit", first_pass_only)
    net = build_convnet(10, "signed-constant", seed=8)
    X, y = images(12, 8)
    res = conv_local_search(net, X, y, ConvSearchConfig(max_passes=5, rank_samples=12, seed=8))
    assert [h["accepted"] > 0 for h in res.history] == [True, False]
