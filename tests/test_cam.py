"""bench.cam: batched CAMs for every registered backbone, equal to the per-image baseline, and
leaving the model exactly as it was found."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

import backbones  # noqa: E402
from bench import seeding  # noqa: E402
from bench.cam import METHODS, compute_cams, compute_cams_per_image  # noqa: E402
from bench.cam_methods import CAMS  # noqa: E402

ALL = [e.name for e in backbones.list_backbones()]
TINY = [e.name for e in backbones.list_backbones() if e.meta["tiny"]]
SIZES = [(64, 64), (64, 80)]
TARGETS = [(0, 2), (1, 0), (0, 0), (2, 1), (1, 2), (0, 1)]  # several classes per image, mixed order
# Batched and single-image forwards may use different conv kernels; min-max normalisation of the
# map amplifies those float32 differences to up to ~1e-5.
ATOL = 2e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _model(name: str, num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    seeding.seed_torch("test_cam", name, seed)  # timm initialises weights from the global generator
    model = backbones.create_model(name, num_classes=num_classes)
    # With random weights a class's evidence is often negative everywhere, giving all-zero Grad-CAM
    # maps that would make the comparisons below vacuous; positive classifier rows avoid that.
    with torch.no_grad():
        model.get_classifier().weight.abs_()
    return model


def _images(n: int, size: tuple[int, int], seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, *size, generator=torch.Generator().manual_seed(seed))


def _hook_counts(model: torch.nn.Module) -> dict:
    return {(i, attr): len(value) for i, m in enumerate(model.modules()) for attr, value in vars(m).items()
            if "hook" in attr and isinstance(value, dict)}


def _assert_no_hooks(model: torch.nn.Module) -> None:
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert not getattr(m, attr), f"{type(m).__name__}.{attr} left behind"


def test_every_method_has_an_implementation():
    assert set(METHODS) == set(CAMS.names()) and {"gradcam", "gradcam++", "scorecam"} <= set(METHODS)
    assert all(isinstance(CAMS.get(m).load(), type) for m in METHODS)  # every entry names a CAM class


@pytest.mark.parametrize("name", ALL)
def test_every_backbone_gives_input_sized_maps(name):
    model = _model(name)
    model.train()
    before = _hook_counts(model)
    # one call for the big ones keeps the file fast; at a size where their declared (last) stage is the CAM layer
    sizes = SIZES if name in TINY else [(192, 224)]
    for size in sizes:
        maps = compute_cams(model, name, _images(3, size), TARGETS, method="gradcam")
        assert maps.shape == (len(TARGETS), *size) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
        assert (maps.reshape(len(maps), -1).max(axis=1) > 0.99).all()  # each map is normalised, none empty
    assert all(m.training for m in model.modules())
    assert _hook_counts(model) == before
    _assert_no_hooks(model)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


# Score-CAM runs one forward pass per channel of the CAM layer for every pair: smaller inputs.
CROSS = [(name, method, size) for name in TINY for method in METHODS
         for size in (SIZES if method != "scorecam" else [(64, 64)])]


@pytest.mark.parametrize("name, method, size", CROSS)
def test_batched_equals_per_image(name, method, size):
    model = _model(name).eval()
    images = _images(3, size)
    targets = TARGETS if method != "scorecam" else [(0, 2), (1, 0)]
    # Score-CAM's batch_size also counts masked copies per pass: small batches would be slow
    batch_size = 64 if method == "scorecam" else 2
    batched = compute_cams(model, name, images, targets, method=method, batch_size=batch_size)
    naive = compute_cams_per_image(model, name, images, targets, method=method, batch_size=batch_size)
    assert batched.shape == (len(targets), *size)
    np.testing.assert_allclose(batched, naive, atol=ATOL, rtol=0)
    assert (batched.reshape(len(batched), -1).max(axis=1) > 0.99).all()  # no vacuous empty maps
    assert not any(m.training for m in model.modules())


def test_targets_order_is_respected():
    name = "test_resnet"
    model = _model(name).eval()
    images = _images(3, (64, 64))
    maps = compute_cams(model, name, images, TARGETS)
    order = [3, 0, 5, 1, 4, 2]
    shuffled = compute_cams(model, name, images, [TARGETS[i] for i in order])
    np.testing.assert_allclose(shuffled, maps[order], atol=ATOL, rtol=0)
    # each map is the map of its own (image, class): compare with one-pair calls
    for k, (row, cls) in enumerate(TARGETS):
        alone = compute_cams(model, name, images[row:row + 1], [(0, cls)])[0]
        np.testing.assert_allclose(maps[k], alone, atol=ATOL, rtol=0)
    # different classes of one image give different maps; a repeated pair gives the same map
    assert np.abs(maps[0] - maps[2]).max() > 1e-3
    repeated = compute_cams(model, name, images, [(1, 2), (1, 2)])
    np.testing.assert_array_equal(repeated[0], repeated[1])


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_matches_the_plain_library(method):
    """Starting the graph at the CAM layer and freezing the weights changes nothing."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name = "test_efficientnet"
    model = _model(name).eval()
    images = _images(4, (64, 80))
    ours = compute_cams(model, name, images, [(r, 1) for r in range(4)], method=method)
    cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
    cam = cls(model=model, target_layers=[backbones.cam_layer(model, name, 64)])
    try:
        reference = cam(input_tensor=images, targets=[ClassifierOutputTarget(1)] * 4)
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)


def test_quiet_scorecam_matches_library_scorecam():
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name = "test_convnext"
    model = _model(name).eval()
    images = _images(2, (64, 64))
    ours = compute_cams(model, name, images, [(0, 2), (1, 2)], method="scorecam", batch_size=5)
    cam = ScoreCAM(model=model, target_layers=[backbones.cam_layer(model, name, 64)])
    try:
        reference = cam(input_tensor=images, targets=[ClassifierOutputTarget(2)] * 2)
    finally:
        cam.activations_and_grads.release()
    assert (ours.reshape(2, -1).max(axis=1) > 0.99).all()
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)


def test_small_images_read_a_stage_with_enough_cells():
    """At 48 px a stride-32 stage is 2 x 2: the maps would be 4 flat quadrants. The CAM then reads the deepest of
    timm's feature stages with at least MIN_CAM_CELLS cells per side; at 224 px the declared last stage."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _model("resnet18").eval()
    assert backbones.cam_layer_name(model, "resnet18", 224) == "layer4"
    assert backbones.cam_layer_name(model, "resnet18", 48) == "layer2"  # 48 / 8 = 6 cells
    assert backbones.cam_layer_name(model, "resnet18", 100) == "layer3"  # ceil(100 / 16) = 7 cells
    assert backbones.cam_layer_name(model, "resnet18", 8) == "act1"  # nothing has 6 cells: the shallowest stage
    mobile = _model("mobilenetv3_small_100")
    assert backbones.cam_layer_name(mobile, "mobilenetv3_small_100", 224) == "blocks"  # the registry's entry
    assert backbones.cam_layer_name(mobile, "mobilenetv3_small_100", 48) == "blocks.1"
    images = _images(2, (48, 48))
    ours = compute_cams(model, "resnet18", images, [(0, 1), (1, 1)])
    cam = GradCAM(model=model, target_layers=[model.layer2])
    try:
        reference = cam(input_tensor=images, targets=[ClassifierOutputTarget(1)] * 2)
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)
    flat = GradCAM(model=model, target_layers=[model.layer4])
    try:
        coarse = flat(input_tensor=images, targets=[ClassifierOutputTarget(1)] * 2)
    finally:
        flat.activations_and_grads.release()
    # the 2 x 2 map has at most 4 distinct plateaus' worth of maxima; the 6 x 6 map's maximum is a small spot
    assert (coarse[0] >= coarse[0].max() - 1e-6).sum() >= 12 * 12
    assert (ours[0] >= ours[0].max() - 1e-6).sum() < 12 * 12


def test_model_state_is_restored_exactly():
    name = "test_resnet"
    model = _model(name)
    model.train()
    model.layer1.eval()  # a mixed state must come back as it was
    model.conv1[0].weight.requires_grad_(False)
    kept = torch.full_like(model.fc.weight, 0.5)
    model.fc.weight.grad = kept
    before = _hook_counts(model)
    compute_cams(model, name, _images(2, (64, 64)), [(0, 1), (1, 0)], method="gradcam++")
    assert model.training and not model.layer1.training and not model.layer1[0].bn1.training
    assert model.layer2.training and model.layer4[0].bn2.training
    assert not model.conv1[0].weight.requires_grad and model.fc.weight.requires_grad
    assert model.fc.weight.grad is kept and torch.all(kept == 0.5)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert _hook_counts(model) == before
    _assert_no_hooks(model)


def test_state_is_restored_when_the_library_fails():
    """The library's context manager swallows IndexError; ours must raise it and still clean up."""
    name = "test_resnet"
    model = _model(name).train()
    model.num_classes = None  # hide the size so the bad index reaches the library
    with pytest.raises(IndexError):
        compute_cams(model, name, _images(1, (32, 32)), [(0, 7)])
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    _assert_no_hooks(model)


def test_works_inside_no_grad_and_inference_mode():
    name = "test_efficientnet"
    model = _model(name).eval()
    images = _images(2, (64, 64))
    expected = compute_cams(model, name, images, [(0, 0), (1, 2)])
    with torch.no_grad():
        np.testing.assert_allclose(compute_cams(model, name, images, [(0, 0), (1, 2)]), expected, atol=ATOL)
    with torch.inference_mode():
        np.testing.assert_allclose(compute_cams(model, name, images, [(0, 0), (1, 2)]), expected, atol=ATOL)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_degenerate_map_is_zero_not_nan(method):
    name = "test_resnet"
    model = _model(name).eval()
    with torch.no_grad():
        model.fc.weight[1].zero_()  # class 1 ignores the features: zero gradient, zero map
    maps = compute_cams(model, name, _images(2, (64, 64)), [(0, 1), (1, 1), (0, 0)], method=method)
    assert np.isfinite(maps).all()
    assert np.all(maps[:2] == 0.0) and maps[2].max() > 0.5


def test_bad_arguments_are_reported():
    name = "test_resnet"
    model = _model(name)
    images = _images(2, (32, 32))
    with pytest.raises(ValueError, match="gradcam"):
        compute_cams(model, name, images, [(0, 0)], method="gradkam")
    with pytest.raises(ValueError, match="row 2"):
        compute_cams(model, name, images, [(2, 0)])
    with pytest.raises(ValueError, match="class 3"):
        compute_cams(model, name, images, [(0, 3)])
    with pytest.raises(ValueError, match="device"):
        compute_cams(model, name, images, [(0, 0)], device="meta")
    assert compute_cams(model, name, images, []).shape == (0, 32, 32)
    assert compute_cams(model, name, images, [(0, 0)], device=torch.device("cpu")).shape == (1, 32, 32)
    _assert_no_hooks(model)
