"""The Section 5 scripts run end to end, resume, and write what they say."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, NFCOURSE_PROGRESS="0")


@pytest.mark.parametrize("model", ["gaussian", "realnvp", "multiscale", "maf"])
def test_train_flow_on_digits(tmp_path, model):
    cmd = [sys.executable, str(ROOT / "scripts" / "train_flow.py"), "--data", "digits",
           "--model", model, "--epochs", "1", "--couplings", "2", "--steps", "1",
           "--hidden", "4", "--layers", "2", "--maf-hidden", "16", "--threads", "1",
           "--checkpoint-dir", str(tmp_path), "--resume"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert first.returncode == 0, first.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["model"] == model and result["levels"] == 17 and result["epochs"] == 1
    assert result["max_epochs"] == 1 and result["best_epoch"] == 1
    # bits/dim of the discrete digits: positive, and the nats agree with it
    assert 0 < result["test_bits_per_dim"] < 20
    assert abs(result["test_nll"] / (64 * 0.6931471805599453) - result["test_bits_per_dim"]) < 1e-3
    second = subprocess.run(cmd + ["--epochs", "2"], capture_output=True,
                            text=True, env=ENV, timeout=300)
    assert second.returncode == 0 and "resumed from" in second.stdout, second.stderr
    assert json.loads((tmp_path / "result.json").read_text())["epochs"] == 2


def test_fit_energies_writes_rows_and_resumes(tmp_path):
    out, md = tmp_path / "e.csv", tmp_path / "e.md"
    cmd = [sys.executable, str(ROOT / "scripts" / "fit_energies.py"), "--seeds", "1",
           "--steps", "20", "--samples", "16", "--targets", "U1", "--threads", "1",
           "--output", str(out), "--markdown", str(md)]
    first = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7 and {r["flow"] for r in rows} == {"Gaussian", "planar", "coupling"}
    assert all(float(r["kl"]) >= 0 or r["nan"] == "1" for r in rows)
    assert "| U1 |" in md.read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0 and len(list(csv.DictReader(out.open()))) == 7  # skipped


@pytest.mark.parametrize("posterior", ["planar", "diagonal"])
def test_inference_gaps_of_a_trained_run(tmp_path, posterior):
    train = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "500",
             "--test-size", "20", "--nll-samples", "5", "--batch-size", "100", "--z-dim", "3",
             "--hidden", "16", "--threads", "1", "--epochs", "2", "--posterior", posterior,
             "--flow-length", "2" if posterior == "planar" else "0",
             "--checkpoint-dir", str(tmp_path)]
    trained = subprocess.run(train, capture_output=True, text=True, env=ENV, timeout=300)
    assert trained.returncode == 0, trained.stderr
    gaps = [sys.executable, str(ROOT / "scripts" / "inference_gaps.py"), str(tmp_path),
            "--images", "20", "--samples", "200", "--draws", "50", "--refine-steps", "30",
            "--flow-length", "2", "--threads", "1"]
    done = subprocess.run(gaps, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "gaps.json").read_text())
    own = "planar K = 2" if posterior == "planar" else "diagonal Gaussian"
    assert result["trained_with"] == own
    for split in ("train", "test"):
        r = result[split]
        assert set(r["families"]) == {"diagonal Gaussian", "planar K = 2"}
        for name, row in r["families"].items():
            # log p(x) by IS from the flow's q* sits above every ELBO (up to Monte Carlo error)
            assert r["log_px"]["mean"] > row["elbo_q_star"]["mean"] - 0.5, (split, name)
            # only the family the model was trained with has an encoder, so an amortization gap
            assert ("amortization_gap" in row) == (name == own)
        # the flow's q* starts at the Gaussian's (and at a flow encoder's output), so it is no
        # worse than the Gaussian's
        fams = r["families"]
        assert fams["planar K = 2"]["elbo_q_star"]["mean"] > (
            fams["diagonal Gaussian"]["elbo_q_star"]["mean"] - 0.5)
        assert sum(r["flow_q_star_starts"].values()) == 20
        assert set(r["flow_q_star_starts"]) == ({"gaussian", "encoder"} if posterior == "planar"
                                                else {"gaussian"})
        mine = r["families"][own]
        # q* is optimised for each image: its ELBO beats the encoder's
        assert mine["elbo_q_star"]["mean"] > mine["elbo_q"]["mean"]
        assert mine["amortization_gap"]["stderr"] > 0
    # the table: a row per split and family, the amortization gap only for the own family
    shown = subprocess.run([sys.executable, str(ROOT / "scripts" / "inference_gaps.py"),
                            "--table", str(tmp_path / "gaps.json")],
                           capture_output=True, text=True, env=ENV, timeout=120)
    rows = [line for line in shown.stdout.splitlines() if line.startswith(f"| {own} |")]
    assert len(rows) == 4 and sum(line.endswith("| — |") for line in rows) == 2, shown.stdout


def write_result(run, **changes):
    """A run directory holding the result.json of a planar K = 10 run, with ``changes``."""
    result = {"posterior": "planar", "flow_length": 10, "neg_elbo_test": 94.0, "nll_test": 89.0,
              "nll_stderr": 0.2, "nll_samples": 5000, "steps": 100, "train_images": 60000,
              "train_seconds": 3600, "device": "cpu", "cpus": 2, "cpu": "x86_64",
              "torch_threads": 2, "seed": 0, "command": "train_vae.py ...", "lr": 3e-4,
              "activation": "tanh"}
    run.mkdir(exist_ok=True)
    (run / "result.json").write_text(json.dumps({**result, **changes}))
    return run


def test_table2_keeps_a_row_per_flow_start(tmp_path):
    """Two planar K = 10 runs that differ only in the flow's start are two rows, not one
    replacing the other; rows written before the start was recorded count as random."""
    from nfcourse import results as table2
    rows = []
    for name, extra in [("random", {}), ("identity", {"flow_init": "identity"})]:
        rows.append(table2.row_from(write_result(tmp_path / name, **extra)))
    old = {k: v for k, v in rows[0].items() if k != "flow_init"}   # a row from before
    assert table2.key(old) == table2.key(rows[0]) != table2.key(rows[1])
    text = table2.markdown(rows)
    assert "| planar | 10 | random |" in text and "| planar | 10 | identity |" in text
    # a new recipe is a row of its own; the old recipe's row stays
    maxout = table2.row_from(write_result(tmp_path / "maxout", flow_init="identity",
                                          activation="maxout",
                                          config={"optimizer": "rmsprop"}, lr=1e-5))
    assert maxout["recipe"] == "rmsprop 1e-05, maxout" and table2.key(maxout) != table2.key(rows[1])
    assert "| identity | rmsprop 1e-05, maxout |" in table2.markdown(rows + [maxout])
    # so is a run without annealing; one that annealed is the recipe it always was
    flat, annealed = (table2.row_from(write_result(tmp_path / name, flow_init="identity",
                                                   activation="maxout", anneal_steps=steps))
                      for name, steps in [("flat", 0), ("annealed", 10_000)])
    assert flat["recipe"] == "adam 0.0003, maxout, no annealing"
    assert annealed["recipe"] == "adam 0.0003, maxout" and table2.key(flat) != table2.key(annealed)
    clipped = table2.row_from(write_result(tmp_path / "clipped", activation="maxout",
                                           config={"optimizer": "adam", "clip_grad": 100.0}))
    assert clipped["recipe"] == "adam 0.0003, maxout, clip 100"
    # R&M's optimizer as the reproductions set it, and early stopping, each a recipe of its own
    rmsprop = table2.row_from(write_result(tmp_path / "rmsprop", lr=1e-5,
                                           config={"optimizer": "rmsprop", "momentum": 0.9}))
    assert rmsprop["recipe"] == "rmsprop 1e-05 momentum 0.9, tanh"
    stopped = table2.row_from(write_result(tmp_path / "stopped", patience=50))
    assert stopped["recipe"] == "adam 0.0003, tanh, early stopping (patience 50)"
    assert len({table2.key(r) for r in (rmsprop, stopped, rows[0])}) == 3


def test_table2_reads_the_committed_rows_and_draws_them(tmp_path):
    """The committed CSV has a row per run, each a bound above its NLL; the picture has R&M's
    two rows, the public reproduction's and one marker series per (posterior, flow start,
    recipe)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nfcourse import results

    rows = results.read_table2()
    assert rows and set(results.FIELDS) <= set(rows[0])
    assert all(float(r["test_nll"]) < float(r["test_neg_elbo"]) for r in rows)
    assert results.read_table2(tmp_path / "absent.csv") == []
    fig, ax = plt.subplots()
    results.plot_table2(ax, rows)
    groups = {(r["posterior"], *results.key(r)[3:]) for r in rows}
    assert len(ax.get_lines()) >= 4 and len(ax.containers) == len(groups)
    planar_rm = ax.get_lines()[0]
    assert list(planar_rm.get_ydata()) == [89.9, 87.5, 86.5, 85.7, 85.1]
    # one legend entry per published line and per series (its NLL and −ELBO markers together)
    assert len(ax.get_legend().get_texts()) == 5 + len(groups)
    for size in [(7.5, 4.5), (9, 4)]:      # the site's figure and Section 6's: legend under "K"
        fig.set_size_inches(*size)
        fig.tight_layout()
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.y1 < ax.xaxis.label.get_window_extent(renderer).y0, size
    # the second round's recipe is drawn strongest, every earlier one faint
    alphas = [c.lines[0].get_alpha() for c in ax.containers]
    best = sum(recipe == results.BEST_RECIPE for *_, recipe in groups)
    assert best >= 1 and alphas.count(1.0) == best
    assert sorted(alphas)[:-best] and max(sorted(alphas)[:-best]) < 0.5, alphas
    plt.close(fig)
    # two later recipes of one posterior and start are told apart by their markers
    later = [{**r, "recipe": name} for r, name in
             zip(rows[-2:], ["adam 0.0003, maxout", "adam 0.0003, maxout, no annealing"])]
    later = [{**r, "posterior": "planar", "flow_init": "identity"} for r in later]
    fig, ax = plt.subplots()
    results.plot_table2(ax, later)
    markers = [c.lines[0].get_marker() for c in ax.containers]
    assert len(markers) == 2 and len(set(markers)) == 2, markers
    plt.close(fig)


def test_table2_script_replaces_a_runs_row_and_rewrites_the_doc(tmp_path, monkeypatch):
    """scripts/table2.py RUN: the run's row replaces the row of its cell, seed and start, the
    others stay, and the Markdown between the doc's markers is the whole table."""
    import importlib.util
    from nfcourse import results
    spec = importlib.util.spec_from_file_location("table2", ROOT / "scripts" / "table2.py")
    table2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table2)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "table2.md").write_text(
        "intro\n<!-- table2:start -->\nold\n<!-- table2:end -->\nafter\n")
    monkeypatch.setattr(table2, "ROOT", tmp_path)
    monkeypatch.setattr(table2, "TABLE2_CSV", tmp_path / "table2.csv")
    assert table2.main([str(write_result(tmp_path / "k10", flow_init="identity"))]) == 0
    for nll in (88.0, 87.5):     # a rerun of the same cell replaces its row
        run = write_result(tmp_path / "k80", flow_length=80, flow_init="identity",
                           neg_elbo_test=91.0, nll_test=nll, steps=403800, train_seconds=7200)
        assert table2.main([str(run)]) == 0
    rows = results.read_table2(tmp_path / "table2.csv")
    assert [(r["K"], r["test_nll"], r["hours"]) for r in rows] == [("10", "89.0", "1.0"),
                                                                   ("80", "87.5", "2.0")]
    doc = (tmp_path / "docs" / "table2.md").read_text()
    assert doc.startswith("intro\n") and doc.endswith("<!-- table2:end -->\nafter\n")
    assert ("| planar | 80 | identity | adam 0.0003, tanh | 85.1 | 87.09 | 87.50 ± 0.20 | 89.6 | "
            "91.00 | 403,800 | 2.00 | 0 |") in doc
    assert "old" not in doc
    # --keep: the result (portable command) and each image's log p(x) go to docs/results/ablation
    run = write_result(tmp_path / "nice_10", posterior="nice",
                       command="/home/x/scripts/train_vae.py --activation tanh "
                               "--checkpoint-dir /home/x/runs/nice_10 --activation maxout",
                       config={"optimizer": "adam", "checkpoint_dir": "/home/x/runs/nice_10"})
    with pytest.raises(SystemExit, match="has no result.nll_test.pt"):
        table2.main(["--keep", str(run)])
    torch.save(torch.full((30,), -88.0), run / "result.nll_test.pt")
    assert table2.main(["--keep", str(run)]) == 0
    kept = tmp_path / "docs" / "results" / "ablation" / "nice_10"
    kept_result = json.loads((kept / "result.json").read_text())
    # each option once, with the value the script's parser kept (the last)
    assert kept_result["command"] == ("scripts/train_vae.py --activation maxout "
                                      "--checkpoint-dir runs/nice_10")
    assert kept_result["config"]["checkpoint_dir"] == "runs/nice_10"
    assert "/home/x" not in (kept / "result.json").read_text()
    assert torch.equal(torch.load(kept / "result.nll_test.pt", weights_only=True),
                       torch.full((30,), -88.0))
    assert [r["posterior"] for r in results.read_table2(tmp_path / "table2.csv")] == \
        ["planar", "planar", "nice"]
    assert table2.main(["--keep", str(run)]) == 0          # the same result again: fine
    # a row kept before options were written once is rewritten with the next run
    csv_text = (tmp_path / "table2.csv").read_text()
    (tmp_path / "table2.csv").write_text(csv_text.replace(
        "scripts/train_vae.py --activation maxout --checkpoint-dir runs/nice_10",
        "scripts/train_vae.py --activation tanh --checkpoint-dir runs/nice_10 --activation maxout"))
    assert "--activation tanh" in (tmp_path / "table2.csv").read_text()
    assert table2.main([str(write_result(tmp_path / "k10", flow_init="identity"))]) == 0
    assert [r["command"] for r in results.read_table2(tmp_path / "table2.csv")
            if r["posterior"] == "nice"] == ["scripts/train_vae.py --activation maxout "
                                             "--checkpoint-dir runs/nice_10"]
    # another run of the same name would overwrite the kept one: refused, before any copy
    (tmp_path / "elsewhere").mkdir()
    other = write_result(tmp_path / "elsewhere" / "nice_10", posterior="nice", nll_test=80.0)
    torch.save(torch.full((30,), -80.0), other / "result.nll_test.pt")
    later = write_result(tmp_path / "nice_80", posterior="nice", flow_length=80)
    torch.save(torch.full((30,), -87.0), later / "result.nll_test.pt")
    with pytest.raises(SystemExit, match="already holds another result"):
        table2.main(["--keep", str(later), str(other)])
    assert not (tmp_path / "docs" / "results" / "ablation" / "nice_80").exists()
    assert torch.equal(torch.load(kept / "result.nll_test.pt", weights_only=True),
                       torch.full((30,), -88.0))
