"""The training options the README lists for GPUs, run on CPU through a real trial (no Ray): bf16 autocast,
a DataLoader with worker processes, the SGD optimizer, ``keep_weights``, ``pretrained: <local file>``; and
``torch.compile``, which a trial applies on CUDA only, through :func:`bench.engine.train_epoch` on CPU
(backend ``aot_eager``: graph capture and AOTAutograd, no C++ code generation).

Every variant is compared with one baseline trial (fp32, no loader workers, AdamW, random init) so that each
test can fail for its own reason: the option must change what it should and nothing else.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import Recorder, tiny_spec, tiny_trial_data

import backbones
from bench import engine, seeding
from bench.trial import run_trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(synth_root):
    return tiny_trial_data(synth_root, {"enabled": False})


def with_train(data, **train):
    grid = copy.deepcopy(data.grid)
    grid["train"].update(train)
    return dataclasses.replace(data, grid=grid)


class Spy:
    """Records the model each trial creates (its parameters as created), the optimizer it trains with, the
    dtypes of the logits during training and the worker counts of the training loader."""

    def __init__(self, monkeypatch):
        self.models, self.initial, self.optimizers, self.dtypes, self.workers = [], [], [], [], []
        create, make_optimizer, iterate = backbones.create_model, engine.make_optimizer, engine.iterate

        def create_model(*args, **kwargs):
            model = create(*args, **kwargs)
            self.models.append(model)
            self.initial.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            def hook(module, inputs, out):
                if module.training:
                    self.dtypes.append(out.dtype)

            model.register_forward_hook(hook)
            return model

        def optimizer(*args, **kwargs):
            opt = make_optimizer(*args, **kwargs)
            self.optimizers.append(opt)
            return opt

        def loader(*args, **kwargs):
            if "drop_last" in kwargs:  # engine.train_epoch's loader (prediction reads batches in-process)
                self.workers.append(kwargs.get("num_workers", 0))
            return iterate(*args, **kwargs)

        monkeypatch.setattr(backbones, "create_model", create_model)
        monkeypatch.setattr(engine, "make_optimizer", optimizer)
        monkeypatch.setattr(engine, "iterate", loader)


def trial(data, tmp_path, monkeypatch, name, **train):
    spy = Spy(monkeypatch)
    rec = Recorder(tmp_path / name)
    run_trial(tiny_spec(), with_train(data, **train), report=rec)
    out = rec.folders[-1] / "outputs"
    with np.load(out / "predictions.npz") as z:
        probs = z["probs"].copy()
    return {"spy": spy, "rec": rec, "metrics": rec.metrics[-1], "probs": probs,
            "summary": json.loads((out / "metrics.json").read_text())["summary"]}


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return trial(data, tmp_path_factory.mktemp("baseline"), mp, "baseline")


def test_baseline_trains_in_fp32_with_adamw_and_no_loader_workers(baseline):
    spy = baseline["spy"]
    assert set(spy.dtypes) == {torch.float32} and set(spy.workers) == {0}
    assert [type(o).__name__ for o in spy.optimizers] == ["AdamW"]
    assert np.isfinite(baseline["probs"]).all()


def test_bf16_autocast_on_cpu(data, baseline, tmp_path, monkeypatch):
    got = trial(data, tmp_path, monkeypatch, "bf16", precision="bf16")
    assert set(got["spy"].dtypes) == {torch.bfloat16}  # every training forward pass ran under bf16 autocast
    assert np.isfinite(got["probs"]).all() and np.isfinite(got["summary"]["macro_auc"])
    assert not np.array_equal(got["probs"], baseline["probs"])  # bf16 arithmetic, not the fp32 path again
    np.testing.assert_allclose(got["probs"], baseline["probs"], atol=0.1)  # but the same model, nearly


def test_loader_with_worker_processes_gives_the_same_numbers(data, baseline, tmp_path, monkeypatch):
    got = trial(data, tmp_path, monkeypatch, "workers", num_workers=2)
    assert set(got["spy"].workers) == {2}
    # Workers only gather the same batches in the same order: same training, same predictions, bit for bit.
    np.testing.assert_array_equal(got["probs"], baseline["probs"])
    assert got["metrics"]["train_loss"] == baseline["metrics"]["train_loss"]


def test_sgd_and_keep_weights(data, baseline, tmp_path, monkeypatch):
    got = trial(data, tmp_path, monkeypatch, "sgd", optimizer="sgd", keep_weights=True)
    opt = got["spy"].optimizers[0]
    assert type(opt).__name__ == "SGD" and opt.param_groups[0]["momentum"] > 0
    assert not np.array_equal(got["probs"], baseline["probs"])
    # keep_weights: the last checkpoint holds the trained weights (the baseline's holds outputs only) ...
    assert not (baseline["rec"].folders[-1] / "state.pt").exists()
    state = torch.load(got["rec"].folders[-1] / "state.pt", weights_only=True)
    model = got["spy"].models[0]
    assert state["epoch"] == 0 and state["model"].keys() == model.state_dict().keys()
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    # ... that differ from the initial ones.
    assert any(not torch.equal(state["model"][k], got["spy"].initial[0][k]) for k in state["model"]
               if state["model"][k].is_floating_point())


def test_pretrained_local_file(data, baseline, tmp_path, monkeypatch):
    """``train.pretrained: <file>`` loads the file's backbone weights (the classifier is the trial's own)."""
    seeding.seed_torch("donor weights")  # an init no trial uses: only loading makes the weights match
    donor = backbones.create_model("test_resnet", len(data.records.label_names))
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(0.01)
    weights = {k: v.clone() for k, v in donor.state_dict().items()}
    path = tmp_path / "weights.pth"
    torch.save(weights, path)
    got = trial(data, tmp_path, monkeypatch, "pretrained", pretrained=str(path))
    initial = got["spy"].initial[0]
    body = [k for k in weights if not k.startswith(("fc.", "head", "classifier"))
            and weights[k].is_floating_point() and "running_" not in k]
    assert len(body) > 10
    for k in body:
        assert torch.equal(initial[k], weights[k]), k
    assert not torch.equal(initial[body[0]], baseline["spy"].initial[0][body[0]])
    assert not np.array_equal(got["probs"], baseline["probs"])


def test_torch_compile_trains_like_eager_on_cpu(data):
    """A trial compiles its model on CUDA only (bench/trial.py); the compiled model goes through the same
    ``engine.train_epoch`` and ``predict_logits``, which this runs on CPU. The backend is ``aot_eager``:
    Dynamo's graph capture and AOTAutograd's forward/backward graphs, as a trial's ``torch.compile`` builds
    them, without inductor's C++ code generation (minutes of g++ on a 2-core machine, so not in the suite)."""
    from bench.data.cache import open_cache
    from strategies import create_strategy

    cache = open_cache(data.records, data.image_size, Path(data.cache_dir))
    imgs = cache.open_for(data.records.image_ids)
    train, _, test = data.manifest.rows(0)
    y = data.records.labels
    strategy = create_strategy("bce").fit(y[train])
    dev = engine.Device.resolve(gpu=0, precision="fp32", channels_last=False)
    losses, logits = [], []
    for compiled in (False, True):
        seeding.seed_torch(0, "compile-test")
        model = backbones.create_model("test_resnet", y.shape[1])
        opt = engine.make_optimizer(model, name="adamw", lr=0.003, weight_decay=0.0)
        net = torch.compile(model, backend="aot_eager") if compiled else model
        stats = engine.train_epoch(net, imgs, y, train[:96], loss_fn=strategy.loss, optimizer=opt,
                                   batch_size=32, dev=dev)
        losses.append(stats["loss"])
        logits.append(engine.predict_logits(net, imgs, test[:32], batch_size=32, dev=dev))
    assert np.isfinite(losses).all()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # a graph was captured and run
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    np.testing.assert_allclose(logits[1], logits[0], rtol=1e-3, atol=1e-3)
