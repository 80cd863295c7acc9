"""Any timm model as a backbone: the name checked against timm, 1-channel input, a head per label, and a Grad-CAM
layer found for CNNs and transformers (ViT token reshape, Swin NHWC), checked against pytorch-grad-cam's documented
ViT / Swin usage; one real `bench run` trial with an unregistered ViT and its Grad-CAM boxes scored."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

import backbones  # noqa: E402
from bench import seeding  # noqa: E402
from bench.cam import compute_cams  # noqa: E402
from bench.cli import main  # noqa: E402
from bench.errors import BenchError  # noqa: E402

# timm's tiny test models that the registry does not list: three ViTs (class token), a ViT without prefix
# tokens (average pooled), CNNs of two more families, and an NHWC CNN. (test_coatnet / test_maxvit are left out:
# timm's relative-position attention refuses this non-square size, 96 x 144.)
UNREGISTERED = ["test_vit", "test_vit2", "test_vit3", "test_vit_relpos", "test_byobnet", "test_nfnet",
                "test_mambaout"]
TINY = UNREGISTERED + ["test_convnext", "test_efficientnet"]  # and two registered ones, through the same checks
SIZE = (96, 144)  # 6 x 9 patches of 16 px; every model's CAM layer has >= MIN_CAM_CELLS cells here
N_CLASSES = 5
ATOL = 2e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _positive_head(model):
    # random weights often give a class negative evidence everywhere (an all-zero map); positive rows avoid that
    with torch.no_grad():
        model.get_classifier().weight.abs_()
    return model


def _model(name: str, size=SIZE):
    seeding.seed_torch("test_backbones", name)  # timm initialises weights from the global generator
    return _positive_head(backbones.create_model(name, num_classes=N_CLASSES, image_size=size))


def _images(n: int, size=SIZE) -> torch.Tensor:
    return torch.randn(n, 1, *size, generator=torch.Generator().manual_seed(1))


def test_the_tiny_models_are_timms():
    assert set(TINY) <= set(timm.list_models("test_*"))
    assert not any(name in backbones.BACKBONES for name in UNREGISTERED)


@pytest.mark.parametrize("name", TINY)
def test_one_channel_a_head_per_label_and_an_aspect_true_cam(name):
    model = _model(name)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # the stem / patch embedding
    assert first.in_channels == 1
    assert model.get_classifier().out_features == N_CLASSES == model.num_classes
    images = _images(3)
    with torch.no_grad():
        assert model.eval()(images).shape == (3, N_CLASSES)
    model.train()
    target = backbones.cam_target(model, name, SIZE)
    assert target.warning is None and min(target.grid) >= backbones.MIN_CAM_CELLS
    assert target.grid[0] * SIZE[1] == target.grid[1] * SIZE[0]  # the map's grid has the image's aspect
    if target.layout == "tokens":
        assert target.layer == f"blocks.{len(model.blocks) - 1}.norm1"
        assert target.prefix_tokens == model.num_prefix_tokens
    maps = compute_cams(model, name, images, [(0, 1), (1, 0), (2, 4)])
    assert maps.shape == (3, *SIZE) and np.isfinite(maps).all()
    assert (maps.reshape(3, -1).max(axis=1) > 0.99).all()  # min-max normalised: not all zero
    assert (maps.reshape(3, -1).std(axis=1) > 0.05).all()  # and not flat
    assert all(m.training for m in model.modules())  # the probe and the CAM left the modes as they were


def _library_cam(model, layer, reshape, images, cls):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)
    try:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(cls)] * len(images))
    finally:
        cam.activations_and_grads.release()


def test_vit_maps_equal_the_documented_usage():
    """pytorch-grad-cam's tutorial: target layer ``model.blocks[-1].norm1``, reshape by dropping the class token
    and laying the rest on the (height, width) patch grid (its ``vit_reshape_transform``)."""
    from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

    model = _model("test_vit").eval()
    target = backbones.cam_target(model, "test_vit", SIZE)
    assert (target.layer, target.layout, target.prefix_tokens, target.grid) == ("blocks.5.norm1", "tokens", 1, (6, 9))
    images = _images(2)
    ours = compute_cams(model, "test_vit", images, [(0, 3), (1, 3)])
    reference = _library_cam(model, model.blocks[-1].norm1, partial(vit_reshape_transform, height=6, width=9),
                             images, 3)
    assert reference.std() > 0.05
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)


def _tiny_swin():
    seeding.seed_torch("test_backbones", "swin")
    model = timm.create_model("swin_tiny_patch4_window7_224", in_chans=1, num_classes=N_CLASSES, embed_dim=16,
                              depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    return _positive_head(model).eval()


def test_swin_maps_equal_the_documented_usage():
    """The tutorial's Swin: ``model.layers[-1].blocks[-1].norm1`` and ``swinT_reshape_transform``, which lays (N, 49, C)
    tokens on a (7, 7) grid, channels first. timm's Swin now returns NHWC, (N, 7, 7, C), which that transform
    misreads (it takes dimension 2 for the channels), so the reference flattens it to the tokens the tutorial had."""
    from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform

    model, name = _tiny_swin(), "swin_tiny_patch4_window7_224"
    target = backbones.cam_target(model, name, 224)
    assert (target.layer, target.layout, target.grid) == ("layers.3.blocks.0.norm1", "NHWC", (7, 7))
    images = _images(2, (224, 224))
    ours = compute_cams(model, name, images, [(0, 2), (1, 2)])
    reference = _library_cam(model, model.layers[-1].blocks[-1].norm1,
                             lambda t: swinT_reshape_transform(t.flatten(1, 2), height=7, width=7), images, 2)
    assert reference.std() > 0.05
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)
    model.set_input_size(img_size=(96, 96))  # the last stage is 3 x 3 here: the deepest stage with 6 x 6 instead
    small = backbones.cam_target(model, name, 96)
    assert (small.layer, small.declared_layer, small.grid) == ("layers.2.blocks.0.norm1", "layers.3.blocks.0.norm1",
                                                              (6, 6))


def test_the_token_reshape_drops_every_prefix_token_and_keeps_row_order():
    """Register tokens as well as the class token (``num_prefix_tokens`` 5): token ``prefix + i * w + j`` is cell
    (i, j) of the map, every channel."""
    model = timm.create_model("test_vit", in_chans=1, num_classes=2, reg_tokens=4)
    model.set_input_size(img_size=(64, 96))
    target = backbones.cam_target(model, "test_vit", (64, 96))
    assert target.prefix_tokens == 5 and target.grid == (4, 6)
    tokens = torch.arange(5 + 24, dtype=torch.float32)[None, :, None].repeat(2, 1, 3)  # (N, tokens, C)
    grid = target.reshape(tokens)
    assert grid.shape == (2, 3, 4, 6)
    expected = 5 + torch.arange(4)[:, None] * 6 + torch.arange(6)[None, :]
    assert torch.equal(grid[1, 2], expected.float())
    with pytest.raises(backbones.CamLayerError, match="23 patch tokens after dropping 5"):
        target.reshape(tokens[:, :-1])
    maps = compute_cams(_positive_head(model), "test_vit", _images(1, (64, 96)), [(0, 1)])
    assert maps.shape == (1, 64, 96) and maps.std() > 0.05


def test_a_patch_grid_below_the_minimum_is_a_recorded_warning():
    model = _model("test_vit", 48)
    target = backbones.cam_target(model, "test_vit", 48)
    assert target.grid == (3, 3)
    assert "Grad-CAM reads 'blocks.5.norm1' (the patch grid of 16 px patches), a 3 x 3 map, below 6" in target.warning
    assert target.as_dict()["warning"] == target.warning and target.as_dict()["grid"] == [3, 3]
    cnn = _model("test_byobnet", 8)  # no feature stage has 6 cells at 8 px: the shallowest, with a warning
    low = backbones.cam_target(cnn, "test_byobnet", 8)
    assert low.layer != low.declared_layer and "timm's shallowest feature stage" in low.warning


def test_a_model_whose_layer_is_not_a_map_is_refused():
    from timm.models.mlp_mixer import MlpMixer

    mixer = MlpMixer(in_chans=1, num_classes=2, patch_size=32, num_blocks=1, embed_dim=16)  # tokens, no class token
    with pytest.raises(backbones.CamLayerError, match="not a 4-D NCHW map; Grad-CAM reads CNNs and ViT"):
        backbones.cam_target(mixer, "mixer_s32_224", 224)


def test_names_are_checked_against_timm():
    from bench.config import parse_grid

    backbones.check_backbone("test_vit")
    backbones.check_backbone("vit_small_patch16_224.augreg_in21k")  # a pretrained tag
    assert backbones.timm_name("resnet18") == "resnet18"
    with pytest.raises(backbones.UnknownBackboneError, match=r"unknown backbone 'test_vitt'; did you mean 'test_vit'"):
        backbones.check_backbone("test_vitt")
    assert parse_grid({"backbones": ["test_vit", "test_resnet"]}).backbones == ("test_vit", "test_resnet")
    with pytest.raises(BenchError, match=r"backbones\[1\]: unknown backbone 'swin_tiny'; did you mean 'swin_tiny_"):
        parse_grid({"backbones": ["test_vit", "swin_tiny"]})


def test_list_all_marks_the_registered(capsys):
    assert main(["list", "backbones", "--all", "test_conv*"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["test_convnext", "test_convnext2", "test_convnext3"]
    assert "[registered] timm's tiny test ConvNeXt" in lines[0] and lines[1].split()[1:] == ["timm", "model"]
    assert main(["list", "backbones", "--all"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(timm.list_models())
    assert main(["list", "strategies", "--all"]) == 2
    assert "--all lists timm's models" in capsys.readouterr().err


@pytest.mark.slow
def test_a_vit_trial_through_bench_run_scores_its_grad_cam(ray_session, synth_root, tmp_path):
    """`bench run` with an unregistered ViT (timm's test_vit) at 96 px, 1 epoch: the trial records its CAM layer
    (the last block's norm1, 6 x 6 patch grid, class token dropped) and scores Grad-CAM against the boxes."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""\
name: vit
dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64, image_size: 96}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_vit]
strategies: [bce]
train: {{epochs: 1, batch_size: 32, lr: 0.001}}
resources: {{cpu: 1}}
localisation: {{methods: [gradcam], max_images: 12, gallery: 1}}
report: {{bootstrap: 20}}
""")
    out = tmp_path / "run"
    assert main(["-q", "run", "--grid", str(grid), "--out", str(out)]) == 0
    trials = sorted((out / "trials").iterdir())
    assert [t.name for t in trials] == ["test_vit-bce-f0-s0", "test_vit-bce-f1-s0"]
    for trial in trials:
        doc = json.loads((trial / "metrics.json").read_text())
        assert doc["cam"] == {"layer": "blocks.5.norm1", "declared_layer": "blocks.5.norm1", "layout": "tokens",
                              "grid": [6, 6], "image": [96, 96], "min_cells": 6, "prefix_tokens": 1}
        assert 0.0 <= doc["summary"]["macro_auc"] <= 1.0
        scored = pd.read_csv(trial / "localisation.csv")
        cams = scored[scored["method"] == "gradcam"]
        assert len(cams) > 0 and cams["hit"].isin([0.0, 1.0]).all() and cams["iou"].notna().all()
        assert set(scored["method"]) == {"gradcam", "random", "centre"}
    assert (out / "localisation.csv").is_file()
    loc = pd.read_csv(out / "localisation.csv")
    assert "test_vit" in set(loc["backbone"]) and "gradcam" in set(loc["method"])
