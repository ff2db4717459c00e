"""What a user does with a finished ticket, where the ticket or the data is unusual: a ticket saved
from Python without its dataset, one trained on an .npz scored on a CSV, one over part of the
network's weights, a ticket copied beside another run's result.json."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import evoprune
from evoprune.cli import main


def _cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A small 3-class table with columns in the thousands beside columns below one."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    X = rng.normal(size=(120, 4)) + y[:, None] * np.array([1.0, -1.0, 0.5, 2.0])
    X *= np.array([1000.0, 0.01, 1.0, 50.0])
    folder = tmp_path_factory.mktemp("wine")
    rows = [",".join(map(str, row)) + f",{c}" for row, c in zip(X, y, strict=True)]
    lines = ["a,b,c,d,label", *rows]
    (folder / "w.csv").write_text("\n".join(lines) + "\n")
    np.savez(folder / "w.npz", X=X, y=y)
    return folder


def test_a_ticket_without_its_dataset_says_its_new_data_goes_in_raw(wine, tmp_path, capsys):
    ds = evoprune.load_file(wine / "w.csv", target="label")
    net = evoprune.build_mlp([4, 12, 3], seed=0)
    config = evoprune.GAConfig(population=10, min_generations=2, max_generations=2)
    ticket = evoprune.search(net, ds.X_train, ds.y_train, config=config)
    ticket.save(tmp_path / "t.npz")  # no ticket.dataset: as the README's shortest example
    code, _, err = _cli(["evaluate", tmp_path / "t.npz", "--data", wine / "w.csv", "--target",
                         "label"], capsys)  # fmt: skip
    assert code == 0 and "records no dataset" in err and "as they are" in err


def test_an_npz_ticket_scored_on_a_csv_says_the_columns_go_by_order(wine, tmp_path, capsys):
    args = ["search", "--data", wine / "w.npz", "--arch", "4,12,3", "--population", "10",
            "--min-generations", "2", "--max-generations", "2", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    code, out, err = _cli(["evaluate", tmp_path / "r", "--data", wine / "w.csv", "--target",
                           "label"], capsys)  # fmt: skip
    assert code == 0 and "no column names" in err and "in their order" in err


def test_a_ticket_over_part_of_the_weights_evaluates_and_the_analyses_say_why_not(tmp_path,
                                                                                  capsys):  # fmt: skip
    ds = evoprune.load_dataset("moons")
    net = evoprune.build_mlp([2, 20, 2], seed=0)
    space = evoprune.MaskSpace(net, lambda name, module: name == "2")  # the output layer only
    config = evoprune.GAConfig(population=10, min_generations=2, max_generations=2)
    ticket = evoprune.search(net, ds.X_train, ds.y_train, config=config, space=space)
    ticket.dataset = ds.config
    ticket.save(tmp_path / "t.npz")
    code, out, err = _cli(["evaluate", tmp_path / "t.npz"], capsys)
    assert code == 0, err
    expected = (ticket.predict(ds.X_test) == ds.y_test).float().mean().item()
    assert f"test acc {expected:.4f}" in out
    for analysis, out in (("landscape", "a"), ("hessian", "a"), ("graph", "g.png")):
        code, _, err = _cli(["analyze", analysis, tmp_path / "t.npz", "--out", tmp_path / out],
                            capsys)  # fmt: skip
        assert code == 2 and "masks only some weights" in err and "\n" not in err.strip()


def test_plot_boundary_labels_a_copied_ticket_by_its_own_record(tmp_path, capsys):
    for variant, seed in (("ga", 0), ("local", 1)):
        args = ["search", "--dataset", "moons", "--arch", "A", "--variant", variant, "--seed",
                seed, "--quiet", "--out", tmp_path / variant, "--max-generations", "2",
                "--min-generations", "2"] if variant == "ga" else [
                "search", "--dataset", "moons", "--arch", "A", "--variant", variant, "--seed",
                seed, "--quiet", "--out", tmp_path / variant, "--max-passes", "1"]  # fmt: skip
        assert _cli(args, capsys)[0] == 0
    copied = tmp_path / "ga" / "other.npz"
    copied.write_bytes((tmp_path / "local" / "ticket.npz").read_bytes())
    code, out, err = _cli(["plot", "boundary", tmp_path / "ga", copied, "--grid", "21", "--out",
                           tmp_path / "b.png"], capsys)  # fmt: skip
    assert code == 0, err
    assert "GA seed 0" in out and "seed 1" in out  # not "GA seed 0" twice


def test_fresh_seed_out_of_range_and_target_without_data_are_one_line(tmp_path, capsys):
    args = ["search", "--dataset", "moons", "--arch", "A", "--population", "10",
            "--min-generations", "2", "--max-generations", "2", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    for extra, message in ((["--fresh", "100", "--fresh-seed", "-1"], "--fresh-seed: expected"),
                           (["--target", "x"], "--target: the label column")):  # fmt: skip
        code, out, err = _cli(["evaluate", tmp_path / "r", *extra], capsys)
        assert code == 2 and message in err and out == ""


def test_a_dense_hessian_beyond_its_size_is_refused_before_the_work():
    from evoprune.analysis.hessian import DENSE_MAX, hessian_spectrum
    from evoprune.errors import EvopruneError

    net = evoprune.build_mlp([784, 30, 10], seed=0)
    n = sum(p.numel() for p in net.parameters() if p.dim() > 1)
    assert n > DENSE_MAX
    X, y = torch.rand(8, 784), torch.randint(0, 10, (8,))
    with pytest.raises(EvopruneError, match="method: dense builds the whole"):
        hessian_spectrum(net, torch.ones(n, dtype=torch.bool), X, y, method="dense")


def test_archs_lists_the_conv_net(capsys):
    assert main(["archs"]) == 0
    assert any(line.startswith("conv ") for line in capsys.readouterr().out.splitlines())


def test_new_data_of_one_row_is_scored(wine, tmp_path, capsys):
    args = ["search", "--data", wine / "w.csv", "--target", "label", "--arch", "4,12,3",
            "--population", "10", "--min-generations", "2", "--max-generations", "2", "--quiet",
            "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    lines = (wine / "w.csv").read_text().splitlines()
    (tmp_path / "two.csv").write_text("\n".join(lines[:3]) + "\n")  # the header and 2 rows
    code, out, err = _cli(["evaluate", tmp_path / "r", "--data", tmp_path / "two.csv"], capsys)
    assert code == 0 and out.startswith("two.csv: 2 rows, acc "), err


def test_an_analysis_whose_output_name_is_a_folder_fails_before_writing(tmp_path, capsys):
    args = ["search", "--dataset", "moons", "--arch", "A", "--population", "10",
            "--min-generations", "2", "--max-generations", "2", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    for analysis, blocked in (("landscape", "landscape.png"), ("hessian", "hessian.json")):
        out = tmp_path / analysis
        (out / blocked).mkdir(parents=True)
        code, _, err = _cli(["analyze", analysis, tmp_path / "r", "--out", out, "--grid", "3"]
                            if analysis == "landscape" else
                            ["analyze", analysis, tmp_path / "r", "--out", out], capsys)  # fmt: skip
        assert code == 2 and f"{blocked} there is a folder" in err
        assert [p.name for p in out.iterdir()] == [blocked]  # nothing written beside it


def _resealed(source, path, edit):
    """`source`'s ticket with its header edited by `edit`, the checksum recomputed to match (as a
    hand-made file would be), so only the header's content is wrong."""
    import hashlib
    import json

    with np.load(source) as npz:
        packed, header = npz["mask"], json.loads(npz["header"].tobytes())
    raw = edit(header)
    raw = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    checksum = hashlib.sha256(packed.tobytes() + b"\0" + raw).hexdigest().encode()
    np.savez(path, mask=packed, header=np.frombuffer(raw, np.uint8),
             checksum=np.frombuffer(checksum, np.uint8))  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda h: b"{not json", "the ticket header is not JSON"),
        (lambda h: [1, 2], "the ticket header is not a JSON object"),
        (lambda h: {k: v for k, v in h.items() if k != "n_bits"}, "'n_bits' is missing"),
        (lambda h: {**h, "n_bits": "many"}, "'n_bits': expected a positive integer, got 'many'"),
        (lambda h: {**h, "layers": [2, "x", 2]}, "'layers': expected a list of integers"),
        (lambda h: {**h, "seed": 1.5}, "'seed': expected an integer, got 1.5"),
        (lambda h: {**h, "metrics": None}, "'metrics': expected an object, got None"),
        (lambda h: {**h, "weights": "0.weight"}, "'weights': expected a list of weight names"),
        (lambda h: {**h, "activation": "swish"}, "'activation': expected one of relu, tanh"),
        (lambda h: {**h, "n_bits": h["n_bits"] + 64}, "the mask has"),
    ],
)
def test_a_hand_made_ticket_header_is_one_line_naming_the_field(tmp_path, capsys, edit, expected):
    args = ["search", "--dataset", "moons", "--arch", "A", "--population", "10",
            "--min-generations", "2", "--max-generations", "2", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    bad = _resealed(tmp_path / "r" / "ticket.npz", tmp_path / "bad.npz", edit)
    with pytest.raises(evoprune.EvopruneError, match=expected.replace("(", r"\(")):
        evoprune.Ticket.load(bad)
    code, out, err = _cli(["evaluate", bad], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_nan_metric_is_written_as_null_and_the_ticket_loads(tmp_path):
    import json

    model = evoprune.nets.build_mlp([2, 4, 2], seed=0)
    n_bits = evoprune.masks.MaskSpace(model).n_bits
    ticket = evoprune.Ticket(mask=torch.ones(n_bits, dtype=torch.bool), layers=[2, 4, 2],
                             metrics={"loss": float("nan"), "acc": np.float64(0.5)})  # fmt: skip
    ticket.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as npz:
        header = npz["header"].tobytes().decode()
    assert "NaN" not in header and json.loads(header)["metrics"] == {"loss": None, "acc": 0.5}
    assert evoprune.Ticket.load(tmp_path / "t.npz").metrics == {"loss": None, "acc": 0.5}


def test_prepare_takes_raw_rows_as_evaluate_data_does(wine, tmp_path, capsys):
    args = ["search", "--data", wine / "w.csv", "--target", "label", "--arch", "A", "--variant",
            "local", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    code, out, _ = _cli(["evaluate", tmp_path / "r", "--data", wine / "w.csv"], capsys)
    reported = float(out.split("acc ")[1].split()[0].rstrip(","))
    ticket = evoprune.Ticket.load(tmp_path / "r")
    raw = np.loadtxt(wine / "w.csv", delimiter=",", skiprows=1)
    X, y = raw[:, :4], raw[:, 4].astype(int)
    prepared = ticket.prepare(X)
    assert prepared.abs().max() < 2 < np.abs(X).max()  # by the training rows ranges: near ±0.7
    accuracy = float((ticket.predict(prepared).numpy() == y).mean())
    assert accuracy == pytest.approx(reported, abs=5e-5)
    assert (
        float((ticket.predict(torch.as_tensor(X, dtype=torch.float32)).numpy() == y).mean())
        < accuracy
    )


def test_labels_of_names_the_classes_as_the_file_did(wine, tmp_path, capsys):
    raw = np.loadtxt(wine / "w.csv", delimiter=",", skiprows=1)
    X, y = raw[:, :4], raw[:, 4].astype(int) * 10 + 10  # labels 10, 20, 30
    lines = ["a,b,c,d,label", *(",".join(map(str, r)) + f",{c}" for r, c in zip(X, y, strict=True))]
    (tmp_path / "tens.csv").write_text("\n".join(lines) + "\n")
    args = ["search", "--data", tmp_path / "tens.csv", "--target", "label", "--arch", "A",
            "--variant", "local", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    assert _cli(args, capsys)[0] == 0
    code, out, _ = _cli(["evaluate", tmp_path / "r", "--data", tmp_path / "tens.csv"], capsys)
    reported = float(out.split("acc ")[1].split()[0].rstrip(","))
    ticket = evoprune.Ticket.load(tmp_path / "r")
    named = ticket.labels_of(ticket.predict(ticket.prepare(X)))
    assert set(named) <= {10, 20, 30}
    assert (named == y).mean() == pytest.approx(reported, abs=5e-5)  # class k is the k-th label
    with pytest.raises(evoprune.EvopruneError, match=r"expected class numbers 0\.\.2, got 0\.\.3"):
        ticket.labels_of([0, 3])


def test_labels_of_refuses_a_negative_class_number():
    t = evoprune.Ticket(mask=torch.ones(6, dtype=torch.bool), layers=[1, 2, 2],
               dataset={"labels": ["cat", "dog"]})  # fmt: skip
    with pytest.raises(evoprune.EvopruneError, match=r"expected class numbers 0\.\.1, got -1"):
        t.labels_of([0, -1])  # numpy would give the last label


@pytest.mark.parametrize("init", ["kaiming-normal", "signed-constant"])
def test_a_ticket_rebuilds_a_scaled_init_with_its_kept_fraction(init):
    # the scaled inits depend on the kept fraction (Ramanujan et al.): a rebuild without it
    # draws other weights, while a test accuracy alone may not tell
    from evoprune.nets import build_mlp

    net = build_mlp([4, 16, 3], init, seed=2, keep=0.3)
    n_bits = 4 * 16 + 16 * 3
    t = evoprune.Ticket(mask=torch.ones(n_bits, dtype=torch.bool), layers=[4, 16, 3], init=init, seed=2,
               keep=0.3)  # fmt: skip
    rebuilt = t.build_model()
    for a, b in zip(net.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("n_bits", "expected"),
    [
        (lambda n: 0, "'n_bits': expected a positive integer, got 0"),
        (lambda n: n - 8, r"the mask has 2 bytes, where the header's n_bits 8 needs 1"),
        (lambda n: n + 8, r"the mask has 2 bytes, where the header's n_bits 24 needs 3"),
    ],
    ids=["zero", "fewer", "more"],
)
def test_a_header_whose_n_bits_disagree_with_the_mask_is_refused(tmp_path, n_bits, expected):
    # a mask longer than its n_bits need would be read as its first n_bits: refused as well
    t = evoprune.Ticket(mask=torch.ones(16, dtype=torch.bool), layers=[2, 4, 2])
    t.save(tmp_path / "t.npz")
    bad = _resealed(tmp_path / "t.npz", tmp_path / "bad.npz",
                    lambda h: {**h, "n_bits": n_bits(h["n_bits"])})  # fmt: skip
    with pytest.raises(evoprune.EvopruneError, match=expected):
        evoprune.Ticket.load(bad)


def test_predict_in_chunks_is_predict_at_once():
    # 10 rows in chunks of 3: the last chunk is short, and no row may be skipped or repeated
    gen = torch.Generator().manual_seed(0)
    t = evoprune.Ticket(mask=torch.rand(3 * 8 + 8 * 4, generator=gen) < 0.7, layers=[3, 8, 4],
                        seed=0)  # fmt: skip
    X = torch.rand(10, 3, generator=gen) * 1.4 - 0.7
    at_once = t.predict(X)
    assert len(at_once) == 10 and len(set(at_once.tolist())) > 1
    assert torch.equal(t.predict(X, chunk=3), at_once)
