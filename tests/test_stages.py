"""Staged strategies and the long-tail recipes: LDAM against Cao et al.'s loss, AUC-M against LibAUC's (when
installed) and the paper's formula, PESG's update, stage boundaries and their errors, mix-up, classifier-only
training, tau-normalisation, and a staged trial resumed inside its second stage (no Ray; the cluster test is in
``test_faults.py``, the grid of every new preset in ``test_run.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import Recorder
from test_strategies import Y, batch, tensors

from bench import engine
from bench.errors import BenchError
from strategies import POSTHOC, create_loss, create_strategy, resolve_spec
from strategies.auc_margin import PESG
from strategies.stages import bounds, segment

NEW = ["ldam", "ldam_drw", "drw", "crt", "tau_norm", "mixup", "balanced_mixup", "aucm", "aucm_2stage"]


# ---- LDAM --------------------------------------------------------------------------------------------------
class OfficialLDAM(torch.nn.Module):
    """Cao et al.'s ``LDAMLoss`` (github.com/kaidic/LDAM-DRW, losses.py), transcribed off CUDA; ``reduction``
    added so that the weighted loss can be averaged over samples rather than over the sum of their weights."""

    def __init__(self, cls_num_list, max_m=0.5, weight=None, s=30, reduction="mean"):
        super().__init__()
        m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
        m_list = m_list * (max_m / np.max(m_list))
        self.m_list = torch.tensor(m_list, dtype=torch.float64)
        self.s, self.weight, self.reduction = s, weight, reduction

    def forward(self, x, target):
        index = torch.zeros_like(x, dtype=torch.uint8)
        index.scatter_(1, target.data.view(-1, 1), 1)
        batch_m = torch.matmul(self.m_list[None, :], index.double().transpose(0, 1)).view((-1, 1))
        output = torch.where(index.bool(), x - batch_m, x)
        return F.cross_entropy(self.s * output, target, weight=self.weight, reduction=self.reduction)


def drw_weights(cls_num_list, beta=0.9999):
    """Cao et al.'s DRW per-class weights (train.py)."""
    effective_num = 1.0 - np.power(beta, cls_num_list)
    w = (1.0 - beta) / np.array(effective_num)
    return torch.tensor(w / np.sum(w) * len(cls_num_list), dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.0, 0.9999])
def test_ldam_on_one_label_is_the_official_two_class_ldam(beta):
    rng = np.random.default_rng(0)
    y = (rng.random((500, 1)) < 0.04).astype(float)
    n_neg, n_pos = int((y == 0).sum()), int((y == 1).sum())
    loss = create_loss({"name": "ldam", "max_m": 0.5, "s": 30.0, "beta": beta}).fit(y)
    z = rng.normal(scale=0.3, size=(64, 1))
    t = (rng.random((64, 1)) < 0.3).astype(float)
    ours = loss(torch.tensor(z), torch.tensor(t)).item()
    two_class = torch.tensor(np.concatenate([np.zeros_like(z), z], axis=1))  # logits (negative, positive)
    target = torch.tensor(t[:, 0], dtype=torch.long)
    weight = drw_weights([n_neg, n_pos]) if beta else None
    official = OfficialLDAM([n_neg, n_pos], max_m=0.5, s=30, weight=weight, reduction="none")(two_class, target)
    assert ours == pytest.approx(official.mean().item(), rel=1e-9)
    if beta == 0:  # unweighted, PyTorch's mean reduction is the same mean
        assert ours == pytest.approx(OfficialLDAM([n_neg, n_pos])(two_class, target).item(), rel=1e-9)


def test_ldam_multilabel_margins_and_loss_match_the_formula():
    loss = create_loss({"name": "ldam", "max_m": 0.4, "s": 10.0, "beta": 0.999}).fit(Y)
    known = ~np.isnan(Y)
    n = np.concatenate([np.maximum((Y == 1).sum(0), 1), np.maximum((known & (Y == 0)).sum(0), 1)]).astype(float)
    m = n ** -0.25 * (0.4 / (n ** -0.25).max())
    w = (1 - 0.999) / (1 - 0.999 ** n)
    w = w / w.sum() * len(w)
    L = Y.shape[1]
    np.testing.assert_allclose(np.concatenate([loss.margin_pos_, loss.margin_neg_]), m, rtol=1e-12)
    assert loss.margin_pos_[-1] == pytest.approx(0.4)  # the rarest label's positives get max_m
    logits, targets = batch(seed=3, scale=0.5, kind="nan")
    yk = np.nan_to_num(targets)
    per = yk * w[:L] * np.logaddexp(0, -10 * (logits - m[:L])) + (1 - yk) * w[L:] * np.logaddexp(0, 10 * (logits + m[L:]))
    assert loss(*tensors(logits, targets)).item() == pytest.approx(per[~np.isnan(targets)].mean(), rel=1e-9)
    np.testing.assert_allclose(loss.adjust_logits(logits), 10 * logits)


# ---- AUC-M -------------------------------------------------------------------------------------------------
def aucm_reference(logits, targets, p, a, b, alpha, margin):
    """Yuan et al. 2021, eq. 6 per label (sigmoid scores), masked mean over the known entries."""
    h = 1 / (1 + np.exp(-logits))
    known = ~np.isnan(targets)
    pos = np.where(known, targets, 0)
    neg = np.where(known, 1 - targets, 0)
    per = (1 - p) * (h - a) ** 2 * pos + p * (h - b) ** 2 * neg + \
        2 * alpha * (p * (1 - p) * margin + p * h * neg - (1 - p) * h * pos) - p * (1 - p) * alpha ** 2
    return per[known].mean()


def fitted_aucm(margin=1.0, seed=0):
    loss = create_loss({"name": "aucm", "margin": margin}).fit(Y)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for t in loss.parameters():
            t.copy_(torch.tensor(rng.uniform(0, 1, size=t.shape)))
    return loss


def test_aucm_matches_the_paper_formula():
    loss = fitted_aucm(margin=0.6)
    logits, targets = batch(seed=2, kind="nan")
    a, b, alpha = (t.detach().double().numpy() for t in loss.parameters())
    want = aucm_reference(logits, targets, loss.p_, a, b, alpha, 0.6)
    assert loss(*tensors(logits, targets)).item() == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(loss.p_, np.nanmean(Y, axis=0), rtol=1e-9)


@pytest.mark.reference
def test_aucm_matches_libauc():
    libauc = pytest.importorskip("libauc.losses", reason="LibAUC is missing: `make test` installs it (pip install "
                                 "--no-deps libauc==2.0.1) to compare the AUC-M loss with it")
    loss = fitted_aucm(margin=1.0)
    logits, targets = batch(seed=4, kind="random")
    x = torch.tensor(logits, dtype=torch.float32)
    h = torch.sigmoid(x)
    ours = loss(x, torch.tensor(targets, dtype=torch.float32)).item()
    L = Y.shape[1]
    per_label = []
    for j in range(L):  # AUCMLoss, one label at a time, with the training prevalence as imratio
        ref = libauc.AUCMLoss(margin=1.0, imratio=float(loss.p_[j]), device="cpu")
        with torch.no_grad():
            for name in ("a", "b", "alpha"):
                getattr(ref, name).copy_(getattr(loss, name + "_")[j:j + 1])
        per_label.append(ref(h[:, j], torch.tensor(targets[:, j]), auto=False).item())
    assert ours == pytest.approx(np.mean(per_label), rel=1e-5)
    multi = libauc.MultiLabelAUCMLoss(margin=1.0, num_labels=L, imratio=[float(p) for p in loss.p_], device="cpu")
    multi.a, multi.b, multi.alpha = (t.detach().float().clone() for t in loss.parameters())
    assert ours == pytest.approx(multi(h, torch.tensor(targets), auto=False).item(), rel=1e-5)


def test_aucm_ranks_below_chance_for_its_first_steps_and_learns_with_hundreds(one_torch_thread):
    # The known answer behind the README's "AUC-M needs hundreds of optimiser steps" (benchmarks/aucm_steps.py:
    # a learnable 14-label problem at NIH's prevalences, an MLP, AUC-M + PESG at LibAUC's defaults). After 60
    # steps (what grids/longtail.yaml gives it) the ranking is below chance; after 600 it has learnt; BCE + Adam
    # has learnt after 60 on the same data.
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "aucm_steps", Path(__file__).resolve().parents[1] / "benchmarks" / "aucm_steps.py")
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)
    aucm = {r["step"]: r for r in steps.train("aucm", 0, steps=(60, 600))}
    assert aucm[60]["macro_auc"] < 0.52 and aucm[600]["macro_auc"] > 0.75, aucm
    assert 0 < aucm[60]["alpha_mean"] < aucm[600]["alpha_mean"]  # the dual variable grows from 0
    (bce,) = steps.train("bce", 0, steps=(60,))
    assert bce["macro_auc"] > 0.7, bce


def test_pesg_descends_on_weights_and_ascends_on_alpha():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    alpha = torch.tensor([0.5], requires_grad=True)
    opt = PESG([{"params": [w]}, {"params": [alpha], "ascent": True}], lr=0.1, momentum=0.9, epoch_decay=0.01,
               weight_decay=0.001)
    ref = w.detach().clone()
    buf = None
    for step in range(3):
        gw, ga = torch.tensor([0.3, -0.1]) * (step + 1), torch.tensor([-2.0 - step])
        w.grad, alpha.grad = gw.clone(), ga.clone()
        before_w, before_a = w.detach().clone(), alpha.detach().clone()
        opt.step()
        d = gw + 0.01 * (before_w - ref) + 0.001 * before_w
        buf = d if buf is None else 0.9 * buf + d
        torch.testing.assert_close(w.detach(), before_w - 0.1 * buf)
        torch.testing.assert_close(alpha.detach(), torch.clamp(before_a + 0.1 * ga, min=0.0))
    assert alpha.item() == 0.0  # projected onto alpha >= 0
    again = PESG([{"params": [w]}, {"params": [alpha], "ascent": True}], lr=0.1)
    again.load_state_dict(opt.state_dict())  # the reference point travels in the checkpoint
    torch.testing.assert_close(again.state[w]["ref"], ref)


# ---- stages: boundaries, specs and errors ----------------------------------------------------------------------
def test_stage_bounds_cover_the_budget_with_an_epoch_each():
    for untils in ([1.0], [0.5, 1.0], [0.7, 1.0], [0.1, 0.2, 1.0], [0.8, 0.9, 1.0]):
        for epochs in range(len(untils), 12):
            spans = bounds(untils, epochs)
            assert spans[0][0] == 0 and spans[-1][1] == epochs
            assert all(a < b for a, b in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert bounds([0.7, 1.0], 10) == [(0, 7), (7, 10)] and bounds([0.8, 1.0], 3) == [(0, 2), (2, 3)]
    with pytest.raises(ValueError, match=r"'crt' trains in 2 stages but train.epochs is 1"):
        create_strategy("crt").stage_bounds(1)


@pytest.mark.parametrize("stages, message", [
    ([{"until": 0.5}, {"until": 0.4}], r"stages\[1\].until=0.4 must be a fraction of train.epochs in \(0.5, 1.0\]"),
    ([{"until": 0.5}], r"stages\[0\].until=0.5: the last stage must end at 1.0"),
    ([{"until": 0.5, "los": "bce"}, {}], r"stages\[0\]: unknown key 'los'; did you mean 'loss'"),
    ([{"until": 0.5}, {"train": "head"}], r"stages\[1\].train='head' is not one of 'all', 'classifier'"),
    ([{"until": 0.5}, {"reinit": True, "restart": False}], r"re-initialises the classifier, so it needs a fresh"),
    ([{"until": 0.5}, {"loss": "aucm", "restart": False}], r"uses its loss's own optimiser \(pesg\)"),
    ([{"until": 0.5, "name": "a"}, {"name": "a"}], r"stage names \['a', 'a'\] repeat"),
    ([{"until": 0.5}, {"mixup": {"alpha": 0}}], r"stages\[1\].mixup.alpha=0 must be a number > 0"),
    ([], r"stages must be a non-empty list"),
])
def test_bad_stages_fail_in_one_line(stages, message):
    with pytest.raises(ValueError, match=message) as err:
        resolve_spec({"name": "mine", "stages": stages})
    assert "\n" not in str(err.value)


def test_a_grid_with_fewer_epochs_than_stages_is_refused(synth_root):
    from bench.config import parse_grid

    with pytest.raises(BenchError, match=r"strategies\[1\]: strategy 'crt' trains in 2 stages but train.epochs is 1"):
        parse_grid({"dataset": {"kind": "synthetic", "root": str(synth_root)}, "strategies": ["bce", "crt"],
                    "train": {"epochs": 1}})


def test_restart_defaults_and_segments():
    crt, drw, two = (create_strategy(n) for n in ("crt", "ldam_drw", "aucm_2stage"))
    assert [s.restart for s in crt.stages] == [True, True] and segment(1, crt.stages) == (1, 1)
    assert [s.restart for s in drw.stages] == [True, False] and segment(1, drw.stages) == (0, 1)  # DRW continues
    assert two.stages[1].reinit and two.stages[1].restart and two.stages[1].loss.optimizer_kind == "pesg"
    assert drw.loss is drw.stages[-1].loss and drw.loss.beta == 0.9999  # prediction uses the last stage's loss


def test_every_new_preset_has_a_description_and_a_reference():
    from strategies import STRATEGIES

    for name in NEW:
        entry = STRATEGIES.get(name)
        assert entry.description and entry.meta["reference"] and "et al." in entry.meta["reference"], name


# ---- mix-up, classifier-only training, tau-norm -----------------------------------------------------------------
def tiny_setup(seed=0, n=64, size=16, labels=3):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(n, size, size), dtype=np.uint8)
    y = (rng.random((n, labels)) < 0.3).astype(np.float32)
    dev = engine.Device(torch.device("cpu"), None, False)
    return images, y, dev


def trained(model_seed, images, y, dev, rows, **kw):
    import timm

    torch.manual_seed(model_seed)
    model = timm.create_model("test_resnet", num_classes=y.shape[1], in_chans=1)
    opt = engine.make_optimizer(model, name="sgd", lr=0.05, weight_decay=0.0)
    engine.train_epoch(model, images, y, rows, loss_fn=create_loss("bce").fit(y), optimizer=opt, batch_size=16,
                       dev=dev, **kw)
    return model


def test_mixup_with_itself_or_lambda_zero_is_plain_training():
    images, y, dev = tiny_setup()
    rows = np.random.default_rng(1).permutation(len(y))
    plain = trained(0, images, y, dev, rows)
    n_b = engine.n_train_batches(len(rows), 16)
    other = np.random.default_rng(2).permutation(len(y))
    for mix in ((other, np.zeros(n_b)), (rows, np.full(n_b, 0.4))):  # lam 0, or a batch mixed with itself
        mixed = trained(0, images, y, dev, rows, mix=mix)
        for (k, a), b in zip(plain.state_dict().items(), mixed.state_dict().values()):
            torch.testing.assert_close(a, b, msg=k)
    assert not torch.equal(trained(0, images, y, dev, rows, mix=(other, np.full(n_b, 0.4))).fc.weight, plain.fc.weight)


def test_balanced_mixup_draws_class_aware_partners_and_beta_lambdas():
    s = create_strategy("balanced_mixup").fit(Y)
    mix = s.stages[0].mixup
    rows = mix.partner_rows(np.random.default_rng(0), 3000)
    assert len(rows) == 3000 and (Y[rows, -1] == 1).mean() > 5 * np.nanmean(Y[:, -1])  # the rarest label drawn often
    lam = mix.lambdas(np.random.default_rng(0), 20000)
    assert lam.mean() == pytest.approx(0.2 / 1.2, abs=0.01)  # Beta(0.2, 1): mostly the instance batch


def test_classifier_only_training_leaves_the_backbone_untouched():
    import timm

    images, y, dev = tiny_setup()
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=y.shape[1], in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    engine.reset_classifier(model, y.shape[1], dev)
    assert not torch.equal(model.get_classifier().weight, before["fc.weight"])
    params = engine.trainable(model, "classifier")
    assert {id(p) for p in params} == {id(p) for p in model.get_classifier().parameters()}
    opt = engine.make_optimizer(params, name="adamw", lr=0.01, weight_decay=0.01)
    engine.train_epoch(model, images, y, np.arange(len(y)), loss_fn=create_loss("bce").fit(y), optimizer=opt,
                       batch_size=16, dev=dev, train_only=engine.classifier(model))
    for k, v in model.state_dict().items():  # weights and batch-norm statistics alike
        if not k.startswith("fc."):
            assert torch.equal(v, before[k]), k
    assert len(engine.trainable(model, "all")) == len(list(model.parameters()))


def test_tau_norm_rescales_rows_and_cannot_change_per_label_ranking():
    import timm

    images, y, dev = tiny_setup(seed=3)
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=y.shape[1], in_chans=1)
    with torch.no_grad():
        model.fc.weight.mul_(torch.tensor([[0.2], [1.0], [3.0]]))  # rows of different norms
    rows = np.arange(len(y))
    logits = engine.predict_logits(model, images, rows, batch_size=32, dev=dev)
    weight, bias = engine.classifier_rows(model)
    tau = POSTHOC.create("tau_norm", taus=[0.0, 0.5, 1.0], criterion="bce")
    tau.fit(weight, bias, logits, y)
    assert tau.tau_ in (0.0, 0.5, 1.0) and len(tau.scores_) == 3
    np.testing.assert_allclose(tau.scale_, np.linalg.norm(weight, axis=1) ** -tau.tau_, rtol=1e-6)
    for t in (0.0, 1.0):
        tau.tau_ = t
        tau.scale_ = np.linalg.norm(weight, axis=1) ** -t
        z = tau.transform(logits)
        if t == 0:
            np.testing.assert_allclose(z, logits, rtol=1e-6)
        for j in range(y.shape[1]):  # a positive rescaling of z - b: the same order within each label
            assert (np.argsort(z[:, j], kind="stable") == np.argsort(logits[:, j], kind="stable")).all()
    scaled = timm.create_model("test_resnet", num_classes=y.shape[1], in_chans=1)
    scaled.load_state_dict(model.state_dict())
    engine.scale_classifier_rows(scaled, tau.scale_)
    np.testing.assert_allclose(engine.predict_logits(scaled, images, rows, batch_size=32, dev=dev), tau.transform(logits),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"criterion='acc' is not one of 'f1_fixed', 'bce'"):
        create_strategy({"name": "t", "posthoc": {"name": "tau_norm", "criterion": "acc"}})


# ---- optimiser steps per stage, and the warning when a loss gets fewer than it needs ----------------------------
@pytest.mark.parametrize("name, per_epoch, steps, warned", [
    ("aucm", 12, [60], [("train", 60)]),            # grids/longtail.yaml's share: below chance (test above)
    ("aucm", 120, [600], []),                       # at the floor: no warning
    ("aucm_2stage", 12, [36, 24], [("aucm", 24)]),  # the BCE stage has no floor
    ("crt", 12, [48, 12], []),
    ("bce", 1, [5], []),
])
def test_stage_steps_and_the_too_few_steps_warning(name, per_epoch, steps, warned, caplog):
    from bench import staging

    strategy = create_strategy(name).fit(Y)
    history = [{"epoch": e + 1, "train_steps": per_epoch} for e in range(5)]
    with caplog.at_level("WARNING", logger="bench.trial"):
        doc = staging.describe(strategy, 5, history)
    assert doc["stage_steps"] == steps
    assert [(w["stage"], w["steps"]) for w in doc["warnings"]] == warned
    for w in doc["warnings"]:
        assert w["kind"] == "too_few_steps" and w["loss"] == "aucm" and w["min_steps"] == 600
        assert f"trained the aucm loss for {w['steps']} optimiser steps, fewer than the 600" in w["message"]
    assert len([r for r in caplog.records if "optimiser steps" in r.getMessage()]) == len(warned)
    assert ("stages" in doc) == strategy.staged
    json.dumps(doc)  # metrics.json takes it as it is


def test_stage_steps_unknown_for_epochs_recorded_without_them(caplog):
    from bench import staging

    with caplog.at_level("WARNING", logger="bench.trial"):
        doc = staging.describe(create_strategy("aucm").fit(Y), 2, [{"epoch": 1, "train_steps": 3}, {"epoch": 2}])
    assert doc["stage_steps"] == [None]  # unknown, not a guess, and said so
    (w,) = doc["warnings"]
    assert w["kind"] == "steps_unknown" and w["min_steps"] == 600
    assert "an unknown number of optimiser steps" in w["message"]
    assert any("an unknown number of optimiser steps" in r.getMessage() for r in caplog.records)
    bce = staging.describe(create_strategy("bce").fit(Y), 2, [{"epoch": 1}, {"epoch": 2}])
    assert bce == {"stage_steps": [None], "warnings": []}  # a loss without a floor has nothing to warn of


# ---- a staged trial resumed inside its second stage (no Ray) --------------------------------------------------
def staged_data(synth_root, epochs):
    from _tiny import tiny_trial_data

    data = tiny_trial_data(synth_root, {"enabled": False})
    data.grid["train"]["epochs"] = epochs
    data.__dict__.pop("cfg", None)
    return data


@pytest.mark.parametrize("strategy", [
    {"name": "crt_half", "preset": "crt", "stages": [
        {"name": "features", "until": 0.5},
        {"name": "classifier", "sampler": "class_aware", "train": "classifier", "reinit": True}]},
    {"name": "aucm_half", "preset": "aucm_2stage"},
], ids=["crt", "aucm_2stage"])
def test_staged_trial_resumes_inside_its_second_stage_with_the_same_numbers(synth_root, tmp_path, strategy):
    from bench.trial import run_trial
    from bench.trial_spec import TrialSpec

    data = staged_data(synth_root, 4)
    spec = TrialSpec.make("test_resnet", resolve_spec(strategy), fold=0, seed=0)
    full = Recorder(tmp_path / "full")
    run_trial(spec, data, report=full)
    doc = json.loads((full.folders[-1] / "outputs" / "metrics.json").read_text())
    second = doc["stages"][1]["name"]
    assert [h["stage"] for h in doc["history"]] == [doc["stages"][0]["name"]] * 2 + [second] * 2
    assert [s["epochs"] for s in doc["stages"]] == [[1, 2], [3, 4]]
    assert doc["stages"][1]["reinit"] is True and doc["stages"][1]["restart"] is True
    per_epoch = [h["train_steps"] for h in doc["history"]]
    assert min(per_epoch) > 0 and doc["stage_steps"] == [sum(per_epoch[:2]), sum(per_epoch[2:])]
    assert [(w["stage"], w["steps"]) for w in doc["warnings"]] == (
        [(second, sum(per_epoch[2:]))] if second == "aucm" else [])  # AUC-M for a few steps only
    config = json.loads((full.folders[-1] / "outputs" / "config.json").read_text())
    assert [s["name"] for s in config["trial"]["strategy"]["stages"]] == [s["name"] for s in doc["stages"]]
    for after in (2, 3):  # at the second stage's first epoch (re-initialise), and inside it (restore the optimiser)
        resumed = Recorder(tmp_path / f"from{after}")
        run_trial(spec, data, report=resumed, checkpoint_dir=str(full.folders[after - 1]))
        assert [m["epoch"] for m in resumed.metrics] == list(range(after + 1, 5))
        again = json.loads((resumed.folders[-1] / "outputs" / "metrics.json").read_text())
        keys = ("epoch", "stage", "train_loss", "train_images", "train_steps", "val_macro_auc")  # not the timings
        assert [{k: h[k] for k in keys} for h in again["history"]] == \
            [{k: h[k] for k in keys} for h in doc["history"]], after
        assert again["summary"] == doc["summary"], after
        with np.load(full.folders[-1] / "outputs" / "predictions.npz") as a, \
                np.load(resumed.folders[-1] / "outputs" / "predictions.npz") as b:
            np.testing.assert_array_equal(a["logits"], b["logits"])


# ---- every new preset in one grid, on Ray Tune -----------------------------------------------------------------
@pytest.mark.slow
def test_every_new_preset_runs_in_a_grid(ray_session, synth_root, tmp_path):
    import pandas as pd

    from bench.cli import main
    from strategies import list_strategies

    assert set(NEW) <= {e.name for e in list_strategies()}
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""\
name: staged-e2e
dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce, {', '.join(NEW)}]
train: {{epochs: 3, batch_size: 32, lr: 0.003}}
seeds: [0]
resources: {{cpu: 1}}
localisation: {{enabled: false}}
report: {{bootstrap: 0}}
""")
    out = tmp_path / "run"
    assert main(["-q", "run", "--grid", str(grid), "--out", str(out)]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board["strategy"]) == sorted(["bce", *NEW]) and (board["n_trials"] == 2).all()
    assert board["macro_auc"].between(0, 1).all()
    docs = {n: json.loads((out / "trials" / f"test_resnet-{n}-f0-s0" / "metrics.json").read_text()) for n in NEW}
    assert [s["epochs"] for s in docs["crt"]["stages"]] == [[1, 2], [3, 3]]
    assert [s["epochs"] for s in docs["ldam_drw"]["stages"]] == [[1, 2], [3, 3]]
    assert docs["ldam_drw"]["stages"][1]["loss"] == {"name": "ldam", "max_m": 0.5, "s": 30.0, "beta": 0.9999}
    assert [h["stage"] for h in docs["aucm_2stage"]["history"]] == ["bce", "bce", "aucm"]
    assert docs["tau_norm"]["posthoc"]["tau"] in docs["tau_norm"]["posthoc"]["taus"]
    assert docs["balanced_mixup"]["stages"][0]["mixup"]["partner"]["name"] == "class_aware"
    assert "stages" not in docs["ldam"] and "stages" not in docs["aucm"]  # single-stage: recorded as before
    assert [(w["stage"], w["loss"]) for w in docs["aucm"]["warnings"]] == [("train", "aucm")]  # 3 epochs: few steps
    assert [w["stage"] for w in docs["aucm_2stage"]["warnings"]] == ["aucm"] and not docs["crt"]["warnings"]
    # the page's Training section shows them (tests/test_html_training.py checks it on made-up trials)
    from test_html_training import _figure, _panel, _rows

    page = (out / "leaderboard.html").read_text(encoding="utf-8")
    rows = {(r[0], r[1]): r for r in _rows(page, "stages")}
    assert [rows[("crt", k)][2:4] for k in "12"] == [["features", "1–2 (2 epochs)"], ["classifier", "3 (1 epoch)"]]
    assert rows[("crt", "2")][7:9] == ["classifier only (the rest frozen)", "yes"]  # trains, re-init
    assert rows[("aucm_2stage", "2")][3:5] == [
        "3 (1 epoch)", "aucm (margin 1, lr 0.1, momentum 0.9, epoch_decay 0.002, weight_decay 1e-05)"]
    tau = [json.loads((out / "trials" / f"test_resnet-tau_norm-f{f}-s0" / "metrics.json").read_text())["posthoc"]
           ["tau"] for f in (0, 1)]
    assert _rows(page, "posthoc")[0][7] == f"f0 s0: {tau[0]:g}, f1 s0: {tau[1]:g}"
    lo_hi = sorted(json.loads((out / "trials" / f"test_resnet-aucm-f{f}-s0" / "metrics.json").read_text())
                   ["warnings"][0]["steps"] for f in (0, 1))
    span = f"{lo_hi[0]}" if lo_hi[0] == lo_hi[1] else f"{lo_hi[0]}–{lo_hi[1]}"
    assert f"test_resnet / aucm trained the aucm loss for {span} optimiser steps in 2 of its 2 trials" in page
    assert "test_resnet / aucm_2stage, stage aucm, trained the aucm loss" in page
    fig = _figure(page, "fig-train-auc")
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    crt = next(t for t in fig["data"] if t.get("mode") == "lines+markers" and titles[_panel(t)] == "crt")
    twin = json.loads((out / "trials" / "test_resnet-crt-f1-s0" / "metrics.json").read_text())
    assert crt["y"] == pytest.approx([(a["val_macro_auc"] + b["val_macro_auc"]) / 2 for a, b in
                                      zip(docs["crt"]["history"], twin["history"])], abs=1e-12)
