"""A trial that asks for a GPU never trains on a CPU (bench/devices.py, bench/engine.py ``Device.resolve``), and
``precision: auto`` picks what the device has natively. This machine has no GPU: CUDA's presence is simulated
where a test says so, and the real "no CUDA" path is what every other test meets."""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np
import pytest
import torch

from bench import devices, engine
from bench.devices import DeviceUnavailable


def test_a_gpu_trial_without_cuda_fails_at_once_with_one_line_that_says_why_and_what_to_do():
    assert not torch.cuda.is_available()  # this machine: the case a mis-built GPU node is in
    with pytest.raises(DeviceUnavailable) as err:
        engine.Device.resolve(gpu=0.5)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("resources.gpu: 0.5 asked for a GPU, but on node ")
    assert "torch sees no CUDA device (Ray assigned GPUs: " in text
    assert f"torch {torch.__version__} built for CUDA {torch.version.cuda}" in text
    assert "NVIDIA driver: none found" in text and "the node has no NVIDIA driver loaded" in text
    assert text.endswith("or set resources.gpu: 0 to train on CPUs")
    assert devices.TEST_SWITCH not in text and "fake" not in text  # the test-only switch is not advertised


def test_only_the_test_switch_trains_a_gpu_trial_on_the_cpu():
    assert engine.Device.resolve(gpu=0.5, fake_gpus=True).device.type == "cpu"
    assert engine.Device.resolve(gpu=0).device.type == "cpu"


def test_the_trial_itself_refuses_before_it_trains(synth_root, tmp_path):
    from _tiny import tiny_spec, tiny_trial_data

    from bench.trial import run_trial

    data = tiny_trial_data(synth_root, {"enabled": False})
    grid = copy.deepcopy(data.grid)
    grid["resources"]["gpu"] = 0.25
    data = dataclasses.replace(data, grid=grid)
    reported = []
    with pytest.raises(DeviceUnavailable, match=r"^resources\.gpu: 0\.25 asked for a GPU, but on node "):
        run_trial(tiny_spec(0), data, report=lambda m, f: reported.append(m))
    assert reported == []  # no epoch ran


@pytest.mark.parametrize(("report", "expect"), [
    ({"torch_cuda": None, "driver": "580.65.06"}, r"^install a CUDA build of torch on the nodes"),
    ({"torch_cuda": "13.0", "driver": None}, r"^the node has no NVIDIA driver loaded"),
    ({"torch_cuda": "13.0", "driver": "535.104.05"}, r"^the driver is older than torch's CUDA 13 needs \(>= 580"),
    ({"torch_cuda": "12.8", "driver": "535.104.05"}, r"^check that the node's GPUs are visible"),
    ({"torch_cuda": "12.8", "driver": "470.82.01"}, r"^the driver is older than torch's CUDA 12 needs \(>= 525"),
])
def test_advice_follows_the_diagnosis(report, expect):
    assert re.match(expect, devices.advice(report)), devices.advice(report)


def _fake_cuda(monkeypatch, *, bf16_native: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls = []

    def is_bf16_supported(including_emulation: bool = True):
        calls.append(including_emulation)
        return bf16_native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return calls


def test_precision_auto_is_bf16_only_where_the_gpu_has_it_natively(monkeypatch):
    calls = _fake_cuda(monkeypatch, bf16_native=True)
    dev = engine.Device.resolve(gpu=1)
    assert dev.device.type == "cuda" and dev.autocast_dtype == torch.bfloat16 and not dev.scales_gradients
    assert calls == [False]  # emulated bf16 does not count


def test_precision_auto_is_fp16_with_a_scaler_on_a_gpu_without_native_bf16(monkeypatch):
    _fake_cuda(monkeypatch, bf16_native=False)  # V100, T4: bf16 only emulated
    dev = engine.Device.resolve(gpu=1)
    assert dev.autocast_dtype == torch.float16 and dev.scales_gradients
    assert engine.Device.resolve(gpu=1, precision="fp32").autocast_dtype is None
    assert engine.Device.resolve(gpu=1, precision="bf16").autocast_dtype == torch.bfloat16


def test_precision_auto_is_fp32_on_a_cpu():
    dev = engine.Device.resolve(gpu=0)
    assert dev.autocast_dtype is None and not dev.scales_gradients
    assert not engine.grad_scaler(dev).is_enabled()


def _train(epochs, *, resume_after=None):
    """test_resnet trained with fp16 autocast and a gradient scaler on the CPU; with ``resume_after``, the model,
    optimizer and scaler go through a state dict after that epoch, as a trial's checkpoint does."""
    from backbones import create_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(64, 16, 16), dtype=np.uint8)
    labels = (rng.random((64, 3)) < 0.3).astype(np.float32)
    dev = engine.Device(torch.device("cpu"), torch.float16, False)
    torch.manual_seed(0)
    model = create_model("test_resnet", 3, pretrained=False)
    opt = engine.make_optimizer(model, name="adamw", lr=0.01, weight_decay=0.0)
    scaler = engine.grad_scaler(dev)
    assert scaler.is_enabled()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for epoch in range(epochs):
        if epoch == resume_after:
            state = copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "scaler": scaler.state_dict()})
            torch.manual_seed(0)
            model = create_model("test_resnet", 3, pretrained=False)
            opt = engine.make_optimizer(model, name="adamw", lr=0.01, weight_decay=0.0)
            scaler = engine.grad_scaler(dev)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
        torch.manual_seed(epoch)
        stats = engine.train_epoch(model, images, labels, np.arange(64), loss_fn=loss_fn, optimizer=opt,
                                   batch_size=16, dev=dev, scaler=scaler)
        losses.append(stats["loss"])
    return losses, scaler.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}


def test_fp16_training_scales_the_loss_and_resumes_with_the_same_scale():
    losses, scaler, weights = _train(3)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 3 * 4  # every step went through the scaler
    again, scaler2, weights2 = _train(3, resume_after=2)
    assert again == losses and scaler2 == scaler
    assert all(torch.equal(weights[k], weights2[k]) for k in weights)


def test_the_pre_scheduling_check_probes_nothing_without_gpus_or_under_the_test_switch(monkeypatch):
    said = []
    assert devices.check_gpu_nodes(0, local=True, say=said.append) == [] and said == []
    monkeypatch.setenv(devices.TEST_SWITCH, "1")
    assert devices.check_gpu_nodes(0.5, local=True, say=said.append) == []
    assert said == ["GPU check skipped (test-only fake GPUs)"]


def test_bench_run_on_this_machine_refuses_gpu_trials_before_writing_anything(ray_session, synth_root, tmp_path,
                                                                               capsys):
    """This machine's own Ray instance has no GPU and no autoscaler: Ray would wait for one forever."""
    from conftest import write_grid

    from bench.cli import main

    grid = write_grid(tmp_path / "grid.yaml", f"""\
name: gpu
dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64, image_size: 16}}
splits: {{folds: 2, val_fraction: 0.25}}
backbones: [test_resnet]
strategies: [bce]
train: {{epochs: 1}}
resources: {{cpu: 1, gpu: 0.5}}
localisation: {{enabled: false}}
""")
    rc = main(["run", "--grid", str(grid), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: resources.gpu: 0.5 asks for GPUs, but this machine's Ray instance has no GPU "
                               "(node "), lines[0]
    assert lines[0].endswith("set resources.gpu: 0 to train on CPUs, or run on a cluster with GPU nodes "
                             "(bench run --address HEAD:6379)"), lines[0]
    assert not (tmp_path / "run").exists()
