"""The training loop: determinism, checkpoints and resume, early stopping, annealing,
NaN handling, and the reproduction script."""

from __future__ import annotations

import json
import re
import time
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nfcourse import objectives
from nfcourse.models import VAE
from nfcourse.flows import MLP
from nfcourse.objectives import anneal_beta
from nfcourse.callbacks import EpochLog
from nfcourse.train import (TrainConfig, TrainingError, evaluate, fit, load_checkpoint,
                            refit_encoder)

ROOT = Path(__file__).resolve().parent.parent


def synthetic(n=240, x_dim=12, seed=0):
    """Binary data with structure: two prototypes, pixels flipped with probability 0.1."""
    protos = torch.bernoulli(torch.full((2, x_dim), 0.5),
                             generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(100 + seed)
    which = torch.randint(0, 2, (n,), generator=g)
    flip = torch.bernoulli(torch.full((n, x_dim), 0.1), generator=g)
    return (protos[which] + flip) % 2


def model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return VAE(12, 2, 16, dropout=dropout)


def train_on(m, train, valid, objective="elbo", k=1, anneal=False, log=None, **settings):
    """fit with a VAE bound (by name or function, ``k`` draws, ``anneal``) and the settings
    as keyword arguments; ``log`` gets the epoch lines."""
    if not isinstance(objective, objectives.Objective):
        objective = objectives.Bound(objective, k, anneal)
    settings.setdefault("progress", False)
    return fit(m, objective, train, valid, TrainConfig(**settings),
               [EpochLog(log)] if log else [])


def run(tmp=None, seed=0, model_seed=0, dropout=0.0, **kwargs):
    m = model(model_seed, dropout)
    opts = dict(epochs=3, batch_size=32, lr=3e-3, seed=seed)
    opts.update(kwargs)
    history = train_on(m, synthetic(), synthetic(60, seed=1), checkpoint_dir=tmp, **opts)
    return m, history


def same_parameters(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


def test_training_lowers_the_loss_and_raises_the_valid_bound():
    m = model()
    valid = synthetic(60, seed=1)
    before = evaluate(m, valid)
    m, history = run(epochs=5, lr=1e-2)
    assert history.train_loss[-1] < history.train_loss[0]
    assert evaluate(m, valid) > before + 1.0
    assert len(history.valid_bound) == 5 and history.stopped == "all 5 epochs done"


def test_training_is_deterministic_with_a_seed():
    a, ha = run(seed=3)
    b, hb = run(seed=3)
    c, hc = run(seed=4)
    assert same_parameters(a, b) and ha.as_dict() | {"seconds": 0} == hb.as_dict() | {"seconds": 0}
    assert not same_parameters(a, c)  # the seed matters (minibatch order and noise)


def test_training_does_not_use_the_global_random_state():
    torch.manual_seed(0)
    a, _ = run()
    torch.manual_seed(123)  # different global state, same fit seed (models built alike)
    m = model(0)
    torch.manual_seed(999)
    train_on(m, synthetic(), synthetic(60, seed=1), epochs=3, batch_size=32, lr=3e-3)
    assert same_parameters(a, m)


def test_checkpoints_round_trip_with_weights_only(tmp_path):
    m, history = run(tmp_path)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["epoch"] == 2 and last["history"]["valid_bound"] == history.valid_bound
    assert best["epoch"] == history.best_epoch
    fresh = model(seed=7)
    assert not same_parameters(fresh, m)
    fresh.load_state_dict(best["model"])
    assert same_parameters(fresh, m)  # fit restores the best parameters, best.pt holds them
    x = synthetic(10, seed=5)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(objectives.elbo(fresh, x, generator=g()),
                       objectives.elbo(m, x, generator=g()))


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    whole, h_whole = run(epochs=4)
    # "interrupted" after 2 epochs: a time limit of 0 s stops at the first epoch's end,
    # so stop with epochs=2 instead, then resume in a fresh process-like setting.
    run(tmp_path, epochs=2)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    resumed, h_resumed = run(tmp_path, epochs=4, resume=True, model_seed=99)
    assert same_parameters(whole, resumed)
    assert h_resumed.valid_bound == h_whole.valid_bound
    assert h_resumed.epoch == [1, 2, 3, 4]
    # resuming a finished run does nothing more
    again, h_again = run(tmp_path, epochs=4, resume=True, model_seed=5)
    assert same_parameters(again, whole) and h_again.epoch == [1, 2, 3, 4]


def test_time_limit_stops_mid_epoch_and_resume_goes_on(tmp_path):
    _, h = run(tmp_path, epochs=4, time_limit=0)
    assert h.epoch == [1] and h.step == [1]
    assert h.stopped == "time limit of 0 s reached at step 1, 1 of 8 batches into epoch 1"
    assert len(h.valid_bound) == 1  # validated and checkpointed all the same
    resumed, h_resumed = run(tmp_path, epochs=4, resume=True)
    assert h_resumed.epoch == [1, 2, 3, 4] and h_resumed.step == [1, 9, 17, 25]
    assert h_resumed.stopped == "all 4 epochs done"


def test_early_stopping_restores_the_best_parameters(tmp_path):
    # lr = 0: nothing changes, so the validation bound (fixed noise) never improves
    m, history = run(tmp_path, epochs=10, patience=2, lr=0.0)
    assert history.epoch == [1, 2, 3] and history.best_epoch == 1
    assert history.stopped.startswith("early stopping")
    # and a run that does improve keeps the best epoch's parameters
    m, history = run(tmp_path / "b", epochs=6, lr=0.05)
    best = load_checkpoint(tmp_path / "b" / "best.pt")
    assert best["epoch"] == history.best_epoch
    fresh = model(1)
    fresh.load_state_dict(best["model"])
    assert same_parameters(fresh, m)


def test_annealing_schedule():
    assert anneal_beta(0) == 0.01 and anneal_beta(9_900) == 1.0 and anneal_beta(5_000) == 0.51
    _, history = run(epochs=3, anneal=20)  # 8 steps per epoch: β after 8, 16, 24 steps
    assert history.beta == [pytest.approx(0.01 + 8 / 20), pytest.approx(0.01 + 16 / 20), 1.0]
    _, plain = run(epochs=3)
    assert plain.beta == [1.0, 1.0, 1.0]
    assert history.train_loss[0] != plain.train_loss[0]  # the objective did change


def test_parameter_average_follows_its_formula(tmp_path):
    """θ̄ after one epoch, recomputed by hand from the iterates θ_t the objective saw."""
    seen = []

    def objective(m, x, beta, gen):
        if m.training:  # validation gets the averaged copy, in eval mode
            seen.append([p.detach().clone() for p in m.parameters()])
        return objectives.elbo(m, x, generator=gen)

    rho = 0.8
    m, _ = run(tmp_path, epochs=1, objective=objective, ema=rho)
    last = load_checkpoint(tmp_path / "last.pt")
    thetas = seen + [list(last["model"].values())]  # θ_0 … θ_8 (8 steps)
    assert len(thetas) == 9
    theta_bar = thetas[0]
    for t in range(8):
        rho_t = min(rho, (1 + t) / (10 + t))
        theta_bar = [rho_t * a + (1 - rho_t) * b for a, b in zip(theta_bar, thetas[t + 1])]
    for expected, got, final in zip(theta_bar, last["averaged"].values(), thetas[-1]):
        torch.testing.assert_close(got, expected)
        assert not torch.allclose(got, final)  # an average, not the last iterate
    # the averaged parameters are what was validated, kept and returned
    for got, expected in zip(m.state_dict().values(), last["averaged"].values()):
        assert torch.equal(got, expected)


def test_parameter_average_with_zero_decay_is_the_plain_run():
    plain, h_plain = run(epochs=3)
    averaged, h_averaged = run(epochs=3, ema=0.0)
    assert same_parameters(plain, averaged) and h_plain.valid_bound == h_averaged.valid_bound


def test_resume_with_a_parameter_average_continues_exactly(tmp_path):
    whole, h_whole = run(epochs=4, ema=0.9)
    run(tmp_path, epochs=2, ema=0.9)
    resumed, h_resumed = run(tmp_path, epochs=4, ema=0.9, resume=True, model_seed=99)
    assert same_parameters(whole, resumed) and h_resumed.valid_bound == h_whole.valid_bound


@pytest.mark.parametrize("ema", [1.0, -0.1, 1.5])
def test_a_bad_decay_gets_a_clear_error(ema):
    with pytest.raises(ValueError, match=rf"ema={ema}: the decay .* must be in \[0, 1\)"):
        run(epochs=1, ema=ema)


def test_dropout_runs_are_reproducible_resumable_and_leave_the_global_state(tmp_path):
    a, _ = run(epochs=4, dropout=0.3)
    b = model(0, dropout=0.3)
    torch.manual_seed(123)  # another caller state: neither used nor changed
    before = torch.get_rng_state()
    train_on(b, synthetic(), synthetic(60, seed=1), epochs=4, batch_size=32, lr=3e-3)
    assert torch.equal(torch.get_rng_state(), before) and same_parameters(a, b)
    run(tmp_path, epochs=2, dropout=0.3)
    resumed, _ = run(tmp_path, epochs=4, dropout=0.3, resume=True)
    assert same_parameters(a, resumed)  # the forked state is checkpointed
    c, _ = run(epochs=4, dropout=0.3, seed=1)
    no_dropout, _ = run(epochs=4)
    assert not same_parameters(a, c) and not same_parameters(a, no_dropout)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    calls = {"n": 0}

    def objective(model, x, beta, gen):
        calls["n"] += 1
        bound = objectives.elbo(model, x, generator=gen)
        return bound * float("nan") if calls["n"] == 21 else bound  # steps 0..7 per epoch

    m = model()
    with pytest.raises(TrainingError, match=r"loss became nan at step 20 \(epoch 3, batch 5 of "
                                            r"8\).*last good checkpoint.*end of epoch 2"):
        train_on(m, synthetic(), None, objective, epochs=5, batch_size=32,
                 checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # 0-based: epoch 2
    assert all(torch.isfinite(p).all() for p in m.parameters())
    # the model stays at the last good step: not put back to the best epoch's parameters
    best = model()
    best.load_state_dict(load_checkpoint(tmp_path / "best.pt")["model"])
    assert not same_parameters(m, best)


def test_without_validation_data_the_last_epoch_is_kept(tmp_path):
    # under annealing the early epochs' training loss is smallest (beta ~ 0): selecting on it
    # would keep the first epoch
    m = model()
    history = train_on(m, synthetic(), None, anneal=30, epochs=4, batch_size=32, lr=3e-3,
                       ema=0.9, checkpoint_dir=tmp_path)
    assert history.train_loss[0] < min(history.train_loss[1:])  # the trap is there
    assert history.best_epoch == 4 and history.stopped == "all 4 epochs done"
    last = load_checkpoint(tmp_path / "last.pt")["averaged"]
    assert all(torch.equal(v, last[k]) for k, v in m.state_dict().items())
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 4
    with pytest.raises(ValueError, match="patience=3 stops on the validation bound"):
        train_on(model(), synthetic(), None, epochs=2, patience=3)


def test_objectives_by_name_and_a_bad_name():
    _, h = run(epochs=1, objective="iwae", k=3)
    assert len(h.valid_bound) == 1
    _, h = run(epochs=1, objective="reconstruction")
    assert len(h.valid_bound) == 1
    with pytest.raises(ValueError, match="objective='elbow'"):
        run(epochs=1, objective="elbow")


def test_step_size_follows_its_schedule(tmp_path):
    lines = []
    run(epochs=4, lr=1e-2, lr_milestones=[3, 1], lr_gamma=0.5, log=lines.append)
    assert [line.split("lr ")[-1].split()[0] for line in lines] == ["1.0e-02", "5.0e-03", "5.0e-03",
                                                         "2.5e-03"]
    # a step size of ~1e-32 after epoch 2 leaves the raw parameters of epoch 2 unchanged
    run(tmp_path / "a", epochs=2)
    run(tmp_path / "b", epochs=4, lr_milestones=[2], lr_gamma=1e-30)
    a, b = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in "ab")
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_resume_follows_the_step_size_schedule_exactly(tmp_path):
    whole, h_whole = run(epochs=4, lr_milestones=[2], lr_gamma=0.3)
    run(tmp_path, epochs=2, lr_milestones=[2], lr_gamma=0.3)  # saved with the undecayed lr
    resumed, h_resumed = run(tmp_path, epochs=4, lr_milestones=[2], lr_gamma=0.3, resume=True,
                             model_seed=99)
    assert same_parameters(whole, resumed) and h_resumed.valid_bound == h_whole.valid_bound


@pytest.mark.parametrize("bad", [dict(lr_milestones=[0]), dict(lr_gamma=0.0),
                                 dict(lr_gamma=1.5)])
def test_a_bad_schedule_gets_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"milestones are epoch numbers >= 1 and the decay"):
        run(epochs=1, **bad)


def test_max_steps():
    _, h = run(epochs=10, max_steps=10)
    assert h.step == [8, 10] and h.stopped == "max_steps=10 reached"


def test_refitting_the_encoder_fits_q_and_leaves_the_model_alone():
    m, _ = run(epochs=5, lr=1e-2)
    valid = synthetic(60, seed=1)
    joint = evaluate(m, valid)
    generative = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("encoder.")}
    torch.manual_seed(1)
    new = MLP(12, 4, [32, 32], "relu", zero_last=False)
    m.encoder, old = new, m.encoder
    fresh = evaluate(m, valid)  # the model with an untrained q: a loose bound
    m.encoder = old
    history = refit_encoder(m, synthetic(), valid, new,
                            TrainConfig(epochs=8, batch_size=32, lr=1e-2, progress=False))
    assert m.encoder is new and len(history.valid_bound) == 8
    # theta is bit-identical; the bound of the same model is tightened by q alone
    after = m.state_dict()
    assert all(torch.equal(after[k], v) for k, v in generative.items())
    refit = evaluate(m, valid)
    assert refit > fresh + 1.0 and refit > joint - 0.2
    assert all(p.requires_grad for p in m.parameters())  # the flags are restored


def test_refitting_the_encoder_rejects_a_wrong_encoder():
    m = model()
    with pytest.raises(ValueError, match=r"outputs 3 numbers.*param_dim\(z_dim\) = 4"):
        refit_encoder(m, synthetic(), encoder=MLP(12, 3, 8, zero_last=False),
                      config=TrainConfig(epochs=1, progress=False))
    assert all(p.requires_grad for p in m.parameters())


@pytest.mark.skipif(not os.environ.get("NFCOURSE_DATA"), reason="needs NFCOURSE_DATA")
def test_reproduction_script_runs_and_resumes(tmp_path):
    """The full-scale command at toy size: 2000 images, 1 epoch, then resumed to 2."""
    cmd = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "2000",
           "--test-size", "50", "--nll-samples", "20", "--batch-size", "200", "--z-dim", "4",
           "--hidden", "32", "16", "--encoder-hidden", "24", "--activation", "gated",
           "--ema", "0.99", "--threads", "1",
           "--lr-milestones", "1", "--lr-gamma", "0.5",
           "--checkpoint-dir", str(tmp_path), "--resume"]
    env = dict(os.environ, NFCOURSE_PROGRESS="0")
    first = subprocess.run(cmd + ["--epochs", "1"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd + ["--epochs", "2", "--proposal", "both", "--refine-steps", "20"],
                            capture_output=True, text=True, env=env,
                            timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["epochs"] == 2 and result["nll_samples"] == 20
    assert result["nll_test"] <= result["neg_elbo_test"] + 1.0  # IS tightens the bound
    # the refined proposal estimates the same model's NLL, no worse than the encoder's
    assert result["nll_test_refined"] <= result["nll_test"] + 0.5
    assert result["refine_steps"] == 20 and result["nll_refined_stderr"] > 0
    assert result["device"] == "cpu" and result["torch_threads"] == 1
    assert result["hidden"] == [32, 16] and result["activation"] == "gated"
    assert result["encoder_hidden"] == [24]
    assert result["ema"] == 0.99
    assert result["lr_milestones"] == [1] and result["lr_gamma"] == 0.5
    assert "lr 1.0e-03" in first.stdout and "lr 5.0e-04" in second.stdout
    # --eval-only evaluates best.pt and does not claim training settings it cannot know
    third = subprocess.run(cmd + ["--eval-only", "--proposal", "refined", "--refine-steps", "5",
                                  "--output", str(tmp_path / "eval.json")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert third.returncode == 0, third.stderr
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["evaluated"] == str(tmp_path / "best.pt") and "lr" not in evaluated
    assert evaluated["nll_test"] is None and evaluated["nll_test_refined"] > 0
    assert evaluated["epochs"] == 2 and evaluated["neg_elbo_test"] == result["neg_elbo_test"]
    # --refit-encoder: a new encoder fitted to the same model; its bound is reported beside
    # the joint encoder's, which must be the number above
    fourth = subprocess.run(cmd + ["--eval-only", "--refit-encoder", "20", "--refit-epochs", "2",
                                   "--output", str(tmp_path / "refit.json")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert fourth.returncode == 0, fourth.stderr
    refit = json.loads((tmp_path / "refit.json").read_text())
    assert refit["neg_elbo_test_joint_encoder"] == result["neg_elbo_test"]
    assert refit["refit_encoder"] == [20] and refit["refit_epochs"] == 2
    assert refit["nll_test"] > 0 and (tmp_path / "refit" / "best.pt").exists()


@pytest.mark.skipif(not os.environ.get("NFCOURSE_DATA"), reason="needs NFCOURSE_DATA")
def test_reproduction_script_can_train_on_training_and_validation_images(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "1000",
           "--test-size", "20", "--nll-samples", "5", "--batch-size", "500", "--z-dim", "2",
           "--hidden", "8", "--threads", "1", "--epochs", "1", "--train-plus-valid",
           "--output", str(tmp_path / "r.json")]
    env = dict(os.environ, NFCOURSE_PROGRESS="0")
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["train_images"] == 1000 + 10_000 and result["train_plus_valid"] is True
    assert result["best_valid_elbo"] is None and result["steps"] == 22
    refused = subprocess.run(cmd + ["--patience", "5"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert refused.returncode != 0 and "no validation set for --patience" in refused.stderr


@pytest.mark.skipif(not os.environ.get("NFCOURSE_DATA"), reason="needs NFCOURSE_DATA")
@pytest.mark.parametrize("posterior, prior", [("planar", "realnvp"), ("iaf", "mixture"),
                                              ("nice", "maf"), ("sylvester-householder",
                                                                "standard")])
def test_reproduction_script_builds_every_posterior_and_prior(tmp_path, posterior, prior):
    """One command per cell of R&M Table 2 (and the flow-prior study): the script builds the
    posterior and prior it is told, trains, evaluates, and records them in the result."""
    cmd = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "300",
           "--test-size", "20", "--nll-samples", "8", "--batch-size", "100", "--z-dim", "4",
           "--hidden", "16", "--threads", "1", "--epochs", "1", "--posterior", posterior,
           "--flow-length", "2", "--flow-hidden", "8", "--iaf-context", "6", "--prior", prior,
           "--prior-layers", "2", "--prior-hidden", "8", "--prior-components", "3",
           "--output", str(tmp_path / "r.json")]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, NFCOURSE_PROGRESS="0"))
    assert ok.returncode == 0, ok.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["posterior"], result["flow_length"], result["prior"]) == (posterior, 2, prior)
    assert result["nll_test"] > 0 and result["neg_elbo_test"] > 0
    bad = subprocess.run(cmd[:-2] + ["--flow-length", "0"], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, NFCOURSE_PROGRESS="0"))
    assert bad.returncode != 0 and "every flow K >= 1" in bad.stderr


def test_reproduction_script_can_start_the_flow_near_the_identity(tmp_path):
    """--flow-init identity: trained, recorded, and refused with a clear message where
    there is no amortized flow to start."""
    cmd = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "300",
           "--test-size", "20", "--nll-samples", "8", "--batch-size", "100", "--z-dim", "4",
           "--hidden", "16", "--threads", "1", "--epochs", "1", "--flow-init", "identity",
           "--output", str(tmp_path / "r.json")]
    env = dict(os.environ, NFCOURSE_PROGRESS="0")
    ok = subprocess.run(cmd + ["--posterior", "planar", "--flow-length", "3"],
                        capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0, ok.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["flow_init"] == "identity" and result["neg_elbo_test"] > 0
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0 and "--flow-init identity" in bad.stderr
    assert "amortized flow posterior" in bad.stderr and "Traceback" not in bad.stderr


def test_every_function_of_the_loop_fits_a_screen():
    """Read by learners: no function of the loop, the callbacks, the objectives or the models
    is longer than 50 lines."""
    import ast
    import nfcourse
    package = Path(nfcourse.__file__).parent
    files = [package / "train.py", package / "callbacks.py", package / "compiled.py",
             *(package / "objectives").glob("*.py"), *(package / "models").glob("*.py")]
    long = {f"{path.name}:{node.name}": node.end_lineno - node.lineno + 1 for path in files
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 50}
    assert long == {}


def test_the_progress_bar_is_honest_under_a_time_limit_and_ends_green(monkeypatch):
    """Under a time limit the bar's total is what the limit lets training reach (its time
    estimate then ends with the limit, not hours later), and a planned stop ends the bar
    complete (tqdm paints an incomplete bar red, which looked like a failure)."""
    import nfcourse.callbacks as callbacks_module
    bars = []

    class FakeBar:
        disable = False

        def __init__(self, iterable=None, desc=None, total=None, initial=0):
            self.total, self.n, self.initial, self.totals = total, initial, initial, []
            bars.append(self)

        def update(self, k):
            self.n += k
            self.totals.append(self.total)

        def set_postfix(self, **kwargs):
            pass

        def refresh(self):
            pass

        def close(self):
            self.closed = (self.n, self.total)

    monkeypatch.setattr(callbacks_module, "_progress", FakeBar)
    slow = lambda m, x, beta, gen: (time.sleep(0.01), objectives.elbo(m, x, generator=gen))[1]  # noqa: E731
    train_on(model(), synthetic(), None, slow, epochs=1000, batch_size=32, time_limit=1.0,
             progress=True)
    bar = bars[-1]
    assert bar.closed[0] == bar.closed[1]                     # complete when it stops
    assert bar.totals[0] == 1000 * 8                          # asked for 8000 steps ...
    assert bar.totals[-1] < 200                               # ... the limit allows ~1 s of them
    h = train_on(model(), synthetic(), None, epochs=2, batch_size=32, progress=True)
    assert bars[-1].closed == (16, 16) and h.stopped == "all 2 epochs done"


@pytest.mark.parametrize("shown", ["1", "0"])
def test_fit_under_a_time_limit_with_the_real_bar_shown_or_silenced(monkeypatch, shown):
    """The real tqdm, not a stand-in: silenced (NFCOURSE_PROGRESS=0, as in logs and the
    scripts' tests) it has no counters, and the time-limit estimate must not read them."""
    monkeypatch.setenv("NFCOURSE_PROGRESS", shown)
    slow = lambda m, x, beta, gen: (time.sleep(0.005), objectives.elbo(m, x, generator=gen))[1]  # noqa: E731
    h = train_on(model(), synthetic(), None, slow, epochs=1000, batch_size=32,
                 time_limit=0.5, progress=True)
    assert h.stopped.startswith("time limit"), h.stopped
    assert int(re.search(r"at step (\d+)", h.stopped).group(1)) >= 10   # the estimate ran


def test_a_bound_without_a_tempered_form_refuses_annealing():
    """The IWAE bound and the reconstruction ignore β: annealed, the log would report β < 1
    for a loss that never changed."""
    for name in ("iwae", "reconstruction"):
        with pytest.raises(ValueError, match=f"the {name} bound has no annealed form"):
            objectives.Bound(name, k=3, anneal=True)
    assert objectives.Bound("elbo", anneal=True).warmup == 10_000
    assert objectives.Bound("iwae", k=3).warmup == 0


def test_the_settings_are_one_frozen_object_and_build_the_command_line():
    import argparse
    import dataclasses
    config = TrainConfig(epochs=3, lr_milestones=[5, 2], checkpoint_dir=Path("runs/a"))
    assert config.lr_milestones == (2, 5) and config.checkpoint_dir == "runs/a"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    assert json.loads(json.dumps(config.as_dict()))["lr_milestones"] == [2, 5]
    parser = argparse.ArgumentParser()
    TrainConfig.add_arguments(parser, defaults={"epochs": 7, "progress": False})
    args = parser.parse_args(["--lr", "0.01", "--lr-milestones", "3", "4", "--ema", "0.9",
                              "--no-log", "--resume"])
    parsed = TrainConfig.from_args(args)
    assert parsed == TrainConfig(epochs=7, lr=0.01, lr_milestones=(3, 4), ema=0.9,
                                 resume=True, progress=False)
    options = {a.dest for a in parser._actions} - {"help"}
    assert options == {f.name for f in dataclasses.fields(TrainConfig)}   # each written once
    import inspect
    assert len(inspect.signature(fit).parameters) <= 6


def test_rmsprop_with_momentum_trains_and_resumes_exactly(tmp_path):
    """R&M's optimizer as their reproductions configure it (here at a toy step size)."""
    opts = dict(optimizer="rmsprop", momentum=0.9, lr=1e-3)
    whole, h_whole = run(epochs=4, **opts)
    assert h_whole.valid_bound[-1] > h_whole.valid_bound[0]
    adam, _ = run(epochs=4, lr=1e-3)
    assert not same_parameters(whole, adam)
    run(tmp_path, epochs=2, **opts)
    resumed, h_resumed = run(tmp_path, epochs=4, resume=True, model_seed=99, **opts)
    assert same_parameters(whole, resumed) and h_resumed.valid_bound == h_whole.valid_bound
    with pytest.raises(ValueError, match="optimizer='sgd' is not one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="momentum=0.9 is RMSprop's"):
        TrainConfig(momentum=0.9)


@pytest.mark.skipif(not os.environ.get("NFCOURSE_DATA"), reason="needs NFCOURSE_DATA")
def test_runs_compare_image_by_image(tmp_path):
    """The ablation's tools: each image's log p(x) saved beside the result, the train-image
    NLL of a checkpoint taken during training, and the paired difference of two runs."""
    env = dict(os.environ, NFCOURSE_PROGRESS="0")
    base = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "300",
            "--test-size", "30", "--nll-samples", "8", "--batch-size", "100", "--z-dim", "2",
            "--hidden", "8", "--threads", "1", "--epochs", "2"]
    for name, extra in [("a", ["--snapshot-every", "1"]),
                        ("b", ["--activation", "maxout", "--lr", "3e-3"])]:
        run_dir = tmp_path / name
        ok = subprocess.run(base + extra + ["--checkpoint-dir", str(run_dir)],
                            capture_output=True, text=True, env=env, timeout=300)
        assert ok.returncode == 0, ok.stderr
        log_px = torch.load(run_dir / "result.nll_test.pt", weights_only=True)
        result = json.loads((run_dir / "result.json").read_text())
        assert log_px.shape == (30,) and abs(-log_px.mean().item() - result["nll_test"]) < 1e-3
    snapshot = tmp_path / "a" / "snaps" / "epoch_0001.pt"     # kept after epoch 1 of 2
    assert sorted(p.name for p in snapshot.parent.iterdir()) == ["epoch_0001.pt", "epoch_0002.pt"]
    ok = subprocess.run(base + ["--checkpoint-dir", str(tmp_path / "a"), "--eval-only",
                                "--eval-images", "train", "--eval-checkpoint", str(snapshot),
                                "--output", str(tmp_path / "a" / "train.json")],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    on_train = json.loads((tmp_path / "a" / "train.json").read_text())
    assert on_train["eval_images"] == "train" and on_train["eval_checkpoint"] == str(snapshot)
    assert on_train["epochs"] == 1             # the copy's own history
    ok = subprocess.run(base + ["--checkpoint-dir", str(tmp_path / "a"), "--eval-only",
                                "--eval-checkpoint", str(snapshot),
                                "--output", str(tmp_path / "a" / "snaps" / "epoch_0001.test.json")],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    wrong = subprocess.run(base + ["--checkpoint-dir", str(tmp_path / "a"), "--eval-only",
                                   "--activation", "tanh", "--output", str(tmp_path / "w.json")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert wrong.returncode != 0 and "trained with --activation relu (given: tanh)" in wrong.stderr
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ablation.py"),
                          str(tmp_path / "a" / "result.json"), str(tmp_path / "b" / "result.json")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    a_nll = torch.load(tmp_path / "a" / "result.nll_test.pt", weights_only=True)
    b_nll = torch.load(tmp_path / "b" / "result.nll_test.pt", weights_only=True)
    d = (a_nll - b_nll).double()
    assert f"| b | test |" in out.stdout and f"{d.mean().item():+.3f}" in out.stdout
    # a run at epoch 1 against its own end, named by its run and epoch
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ablation.py"),
                          str(tmp_path / "a" / "snaps" / "epoch_0001.test.json"),
                          str(tmp_path / "a" / "result.json")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "| a, epoch 1 | test |" in out.stdout and "| a | test |" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "ablation.py"),
                          str(tmp_path / "a" / "result.json"), str(tmp_path / "a" / "train.json")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "compare runs evaluated on the same images" in bad.stderr


@pytest.mark.skipif(not os.environ.get("NFCOURSE_DATA"), reason="needs NFCOURSE_DATA")
def test_snapshots_script_tracks_two_runs_at_the_same_epochs(tmp_path):
    """scripts/snapshots.py: each kept copy evaluated once on test and training images, the
    model rebuilt from args.json while the run has no result.json, and the paired change
    from a base run at each common epoch."""
    env = dict(os.environ, NFCOURSE_PROGRESS="0")
    base = [sys.executable, str(ROOT / "scripts" / "train_vae.py"), "--train-size", "300",
            "--test-size", "30", "--nll-samples", "8", "--batch-size", "100", "--z-dim", "2",
            "--hidden", "8", "--threads", "1", "--epochs", "2", "--snapshot-every", "1"]
    for name, extra in [("a", ["--activation", "tanh"]), ("b", ["--lr", "3e-3"])]:
        ok = subprocess.run(base + extra + ["--checkpoint-dir", str(tmp_path / name)],
                            capture_output=True, text=True, env=env, timeout=300)
        assert ok.returncode == 0, ok.stderr
    settings = json.loads((tmp_path / "a" / "args.json").read_text())
    assert settings["activation"] == "tanh" and settings["hidden"] == [8]
    (tmp_path / "a" / "result.json").unlink()       # as while the run is still training
    script = [sys.executable, str(ROOT / "scripts" / "snapshots.py")]
    options = ["--test-size", "20", "--nll-samples", "4"]
    out = subprocess.run(script + [str(tmp_path / "a"), "--base", str(tmp_path / "b")] + options,
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    snaps = tmp_path / "a" / "snaps"
    assert sorted(p.name for p in snaps.glob("*.json")) == [
        "epoch_0001.test.json", "epoch_0001.train.json", "epoch_0002.test.json",
        "epoch_0002.train.json"]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 1 |")
            or line.startswith("| 2 |")]
    assert len(rows) == 2, out.stdout
    a2, b2 = (torch.load(tmp_path / run / "snaps" / "epoch_0002.test.nll_test.pt",
                         weights_only=True).double() for run in "ab")
    d = b2 - a2                                      # NLL change from b to a, image by image
    assert rows[1].endswith(f"| {d.mean().item():+.3f} ± {(d.std() / 20 ** 0.5).item():.3f} |")
    test = json.loads((snaps / "epoch_0002.test.json").read_text())
    train = json.loads((snaps / "epoch_0002.train.json").read_text())
    assert f"| {test['nll_test'] - train['nll_test']:.2f} |" in rows[1]
    assert test["eval_checkpoint"].endswith("epoch_0002.pt") and test["epochs"] == 2
    # an evaluation on disk is kept, not redone
    stamp = (snaps / "epoch_0001.test.json").stat().st_mtime_ns
    again = subprocess.run(script + [str(tmp_path / "a")] + options, capture_output=True,
                           text=True, env=env, timeout=300)
    assert again.returncode == 0 and "evaluating" not in again.stderr
    assert (snaps / "epoch_0001.test.json").stat().st_mtime_ns == stamp
    assert test["evaluated"] == str((snaps / "epoch_0002.pt").resolve())
    # one with other draws (or images) is redone, not passed off as this one
    redo = subprocess.run(script + [str(tmp_path / "a"), "--test-size", "20",
                                    "--nll-samples", "6"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert redo.returncode == 0 and redo.stderr.count("evaluating") == 4, redo.stderr
    assert json.loads((snaps / "epoch_0001.test.json").read_text())["nll_samples"] == 6
    # a base evaluated on other images before is redone too, so the pairs match
    mixed = subprocess.run(script + [str(tmp_path / "a"), "--base", str(tmp_path / "b")]
                           + ["--test-size", "10", "--nll-samples", "6"], capture_output=True,
                           text=True, env=env, timeout=300)
    assert mixed.returncode == 0, mixed.stderr      # both re-evaluated on the same 10 images
    # args.json guards against evaluating with another model's settings, as result.json does
    wrong = subprocess.run(base + ["--checkpoint-dir", str(tmp_path / "a"), "--eval-only",
                                   "--activation", "relu", "--output", str(tmp_path / "w.json")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert wrong.returncode != 0 and "trained with --activation tanh (given: relu)" in wrong.stderr
    # so does it against resuming with another model's settings (same shapes, other units)
    resumed = subprocess.run(base + ["--checkpoint-dir", str(tmp_path / "a"), "--resume",
                                     "--epochs", "3", "--activation", "relu"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode != 0 and "--resume: " in resumed.stderr
    assert "trained with --activation tanh (given: relu)" in resumed.stderr
    assert json.loads((tmp_path / "a" / "args.json").read_text())["activation"] == "tanh"
    fresh = subprocess.run(base + ["--checkpoint-dir", str(tmp_path / "a")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert fresh.returncode != 0 and "kept copies of an earlier run" in fresh.stderr
    # a run with neither file, or no copies: clear errors
    (tmp_path / "a" / "args.json").unlink()
    bare = subprocess.run(script + [str(tmp_path / "a")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert bare.returncode != 0 and "give them after --" in bare.stderr
    none = subprocess.run(script + [str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert none.returncode != 0 and "train the run with --snapshot-every N" in none.stderr


def test_trained_settings_prefer_args_json_which_records_every_model_setting(tmp_path):
    """A finished run has both files, and result.json lacks settings that build the model
    (here the Sylvester flow's M): the model is rebuilt from args.json; a run older than
    args.json falls back to result.json."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_vae", ROOT / "scripts" / "train_vae.py")
    train_vae = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_vae)
    (tmp_path / "args.json").write_text(json.dumps(
        {"posterior": "sylvester-orthogonal", "flow_length": 4, "sylvester_m": 3}))
    (tmp_path / "result.json").write_text(json.dumps(
        {"posterior": "sylvester-orthogonal", "flow_length": 4, "nll_test": 90.0}))
    argv = train_vae.model_arguments(train_vae.trained_settings(tmp_path))
    assert argv[argv.index("--sylvester-m") + 1] == "3", argv
    (tmp_path / "args.json").unlink()
    assert train_vae.trained_settings(tmp_path)["nll_test"] == 90.0
    (tmp_path / "result.json").unlink()
    assert train_vae.trained_settings(tmp_path) is None


def test_snapshots_keep_last_pt_every_n_epochs_across_a_resume(tmp_path):
    """snapshot_every=2: snaps/epoch_0002.pt and epoch_0004.pt, each the last.pt of that
    epoch (so equal to a run stopped there), also when the run was resumed in between; an
    epoch cut short gets none; no checkpoint_dir is a clear error."""
    run(tmp_path / "whole", epochs=5, snapshot_every=2)
    snaps = tmp_path / "whole" / "snaps"
    assert sorted(p.name for p in snaps.iterdir()) == ["epoch_0002.pt", "epoch_0004.pt"]
    run(tmp_path / "two", epochs=2)
    kept, stopped = (load_checkpoint(p) for p in (snaps / "epoch_0002.pt",
                                                  tmp_path / "two" / "last.pt"))
    assert kept["epoch"] == stopped["epoch"] == 1
    assert all(torch.equal(kept["model"][k], v) for k, v in stopped["model"].items())
    run(tmp_path / "resumed", epochs=3, snapshot_every=2)
    run(tmp_path / "resumed", epochs=5, snapshot_every=2, resume=True)
    again = load_checkpoint(tmp_path / "resumed" / "snaps" / "epoch_0004.pt")
    assert all(torch.equal(again["model"][k], v)
               for k, v in load_checkpoint(snaps / "epoch_0004.pt")["model"].items())
    run(tmp_path / "cut", epochs=4, snapshot_every=1, time_limit=0)
    assert not (tmp_path / "cut" / "snaps").exists()
    # a step limit that falls on an epoch's last batch leaves that epoch whole: it is kept
    per_epoch = run(epochs=1)[1].step[-1]
    run(tmp_path / "limit", epochs=4, snapshot_every=2, max_steps=2 * per_epoch)
    assert [p.name for p in (tmp_path / "limit" / "snaps").iterdir()] == ["epoch_0002.pt"]
    # a fresh run in a directory with another run's copies would pass them off as its own
    with pytest.raises(ValueError, match="kept copies of an earlier run's last.pt.*--resume"):
        run(tmp_path / "whole", epochs=2)
    assert load_checkpoint(tmp_path / "whole" / "last.pt")["epoch"] == 4   # nothing lost
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        TrainConfig(snapshot_every=10)
    with pytest.raises(ValueError, match="n >= 1 epochs"):
        TrainConfig(snapshot_every=0, checkpoint_dir=str(tmp_path))


def test_a_failed_resume_reports_its_own_error(tmp_path):
    """A last.pt of another model fails the restore; the error says so (the progress bar,
    never started, must not hide it)."""
    torch.manual_seed(0)
    other = VAE(12, 3, 16)
    train_on(other, synthetic(), None, epochs=1, batch_size=32, checkpoint_dir=tmp_path)
    with pytest.raises(RuntimeError, match="Error\\(s\\) in loading state_dict"):
        train_on(model(), synthetic(), None, epochs=2, batch_size=32, checkpoint_dir=tmp_path,
                 resume=True, progress=True)


def test_the_step_limit_comes_before_the_time_limit():
    _, h = run(epochs=10, max_steps=10, time_limit=3600)
    assert h.step == [8, 10] and h.stopped == "max_steps=10 reached"


def test_one_shared_bar_counts_every_fit_of_a_loop_by_its_cost():
    """loop_bar + SharedBar: one bar over several fits, each step weighted by its cost, so
    that the bar ends full exactly when the last fit ends."""
    from nfcourse.callbacks import SharedBar, loop_bar
    costs, steps = [1.0, 2.5], 3 * 8                # 3 epochs of 240 points: 8 batches of 32
    bar = loop_bar(steps * sum(costs), "two fits")
    for seed, cost in enumerate(costs):
        history = fit(model(seed), "elbo", synthetic(), None,
                      TrainConfig(epochs=3, batch_size=32, progress=False),
                      callbacks=[SharedBar(bar, cost)])
        assert history.step[-1] == steps
    assert bar.n == pytest.approx(bar.total)
    bar.close()


def grad_norm(m) -> float:
    return torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in m.parameters() if p.grad is not None])).item()


def test_clipping_bounds_the_gradient_and_is_a_no_op_below_the_bound():
    plain, _ = run(epochs=2)
    assert grad_norm(plain) > 1.0                  # the last step's gradient, left in .grad
    clipped, h = run(epochs=2, clip_grad=1.0)
    assert grad_norm(clipped) == pytest.approx(1.0, rel=1e-5)
    assert not same_parameters(plain, clipped) and h.valid_bound[-1] > h.valid_bound[0]
    loose, _ = run(epochs=2, clip_grad=1e9)
    assert same_parameters(plain, loose)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match=f"clip_grad={bad!r}: the largest gradient norm"):
            TrainConfig(clip_grad=bad)
