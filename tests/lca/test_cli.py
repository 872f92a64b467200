"""`assocmem lca train`: output files, seed forms, and one-line errors with exit status 2."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from assocmem.cli import main
from assocmem.io import read_json

TINY = ["--m", "3", "--L", "8", "--d", "8", "--steps", "12", "--batch-size", "16", "--warmup-steps", "2",
        "--eval-every", "6", "--eval-samples", "128", "--device", "cpu", "--no-progress"]


def test_train_writes_summary_weights_and_prints_a_table(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["lca", "train", *TINY, "--freeze-value", "--seeds", "0", "1", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bayes-opt" in printed and "gap" in printed and "mean" in printed
    summary = read_json(out / "summary.json")
    assert summary["seeds"] == [0, 1, 2]
    assert summary["config"]["task"] == {"m": 3, "L": 8, "omega": 0.5, "beta": 1.0, "neighborhood": "all",
                                         "extra_tokens": 0}
    assert summary["config"]["model"]["freeze_value"] is True and summary["config"]["model"]["d_a"] == 8
    for key in ("final_accuracy", "bayes_optimal_accuracy", "gap_to_bayes"):
        assert len(summary[key]) == 3
    gap = summary["bayes_optimal_accuracy"][1] - summary["final_accuracy"][1]
    assert summary["gap_to_bayes"][1] == pytest.approx(gap)
    assert {row["step"] for row in summary["loss_curve"]} == {6, 12}
    assert set(summary["loss_curve"][0]) == {"model", "step", "seed", "loss", "accuracy"}
    weights = load_file(out / "weights.safetensors")
    assert weights["W_E"].shape == (3, 8, 8) and weights["W_V"].shape == (3, 8, 8)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("argv, seeds", [(["--seeds", "0", "1", "2"], [0, 1, 2]), (["--seeds", "0,1,2"], [0, 1, 2]),
                                         (["--seeds", "0 1"], [0, 1]), (["--seeds", "3", "--seeds", "4"], [3, 4]),
                                         ([], [0])])
def test_seed_forms(tmp_path, argv, seeds):
    assert main(["lca", "train", *TINY, *argv, "--out", str(tmp_path / "run")]) == 0
    assert read_json(tmp_path / "run" / "summary.json")["seeds"] == seeds


@pytest.mark.parametrize(
    "argv, option, allowed",
    [
        (["--m", "13"], "--m=13", "[1, 12]"),
        (["--m", "0"], "--m=0", "[1, 12]"),
        (["--omega", "1.5"], "--omega=1.5", "[0, 1]"),
        (["--beta", "0"], "--beta=0.0", "(0, inf)"),
        (["--L", "0"], "--L=0", "[1, inf]"),
        (["--d-a", "0"], "--d-a=0", "[1, inf]"),
        (["--neighborhood", "ring"], "--neighborhood='ring'", "all, hamming1, cluster1, cluster2"),
        (["--m", "2", "--neighborhood", "cluster2"], "--neighborhood='cluster2' is empty for m=2", "m >= 3"),
        (["--init", "torch", "--init-std", "0.1"], "--init-std=0.1", "None with init='torch'"),
        (["--seeds", "0", "x"], "--seeds=", "non-negative integers"),
        (["--protocol", "papr"], "--protocol='papr'", "ours, paper (did you mean paper?)"),
        (["--betas", "0.9"], "--betas=(0.9,)", "two numbers"),
        (["--schedule", "step"], "--schedule='step'", "constant, cosine"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(tmp_path, capsys, argv, option, allowed):
    assert main(["lca", "train", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert option in err and allowed in err
    assert not (tmp_path / "x").exists()


def test_a_stray_argument_is_a_usage_error(tmp_path, capsys):
    assert main(["lca", "train", "--out", str(tmp_path / "x"), "7"]) == 2
    assert "7" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_the_protocol_preset_sits_under_the_options_given(tmp_path):
    """--protocol paper is the authors' protocol (lca.protocols); an option given on top changes only itself."""
    from assocmem.lca.protocols import protocol

    assert main(["lca", "train", *TINY, "--protocol", "paper", "--out", str(tmp_path / "run")]) == 0
    config = read_json(tmp_path / "run" / "summary.json")["config"]
    paper = protocol("paper").train
    assert config["protocol"] == "paper" and config["task"]["extra_tokens"] == 1 and config["model"]["init"] == "torch"
    assert config["train"]["steps"] == 12 and config["train"]["warmup_steps"] == 2        # given
    assert config["train"]["betas"] == list(paper.betas) and config["train"]["schedule"] == paper.schedule
    assert config["train"]["batch_size"] == 16 and paper.batch_size == 256


def test_unparsable_number_is_a_usage_error(tmp_path, capsys):
    assert main(["lca", "train", "--out", str(tmp_path), "--m", "eight"]) == 2
    assert "--m" in capsys.readouterr().err


def test_the_experiments_read_what_lca_train_writes(tmp_path):
    """One weights format: an `lca train` folder loads with the experiments' reader, models and
    accuracies as the summary says."""
    import torch

    from assocmem.experiments.common import load_models

    out = tmp_path / "run"
    assert main(["lca", "train", *TINY, "--seeds", "0", "1", "--out", str(out)]) == 0
    models = load_models(out, torch.device("cpu"))
    summary = read_json(out / "summary.json")
    assert [m.seed for m in models] == [0, 1] and models[0].task.m == 3 and models[0].model.d == 8
    assert [m.final_accuracy for m in models] == summary["final_accuracy"]
    assert models[1].weights["W_E"].shape == (1, 8, 8)


def test_an_existing_folder_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["lca", "train", *TINY, "--out", str(out)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["lca", "train", *TINY, "--steps", "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --out='{out}' is invalid: allowed a new or empty folder (it holds summary.json, "
                   "weights.safetensors); choose another folder, or delete it to train again")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before      # nothing overwritten
    (tmp_path / "empty").mkdir()
    assert main(["lca", "train", *TINY, "--out", str(tmp_path / "empty")]) == 0
