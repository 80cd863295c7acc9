"""Batched class-activation maps (Grad-CAM, Grad-CAM++, Score-CAM) for any timm backbone.

The layer read and the reshape of its output to a (N, C, h, w) map come from :func:`backbones.cam_target`: a
CNN's feature stage as it is; a ViT's last ``norm1`` with the prefix tokens dropped and the patch tokens laid on
the patch grid; a Swin's NHWC output permuted (pytorch-grad-cam's ``reshape_transform``).

A multi-label model is asked for explicit ``(image_row, class_index)`` pairs, never for an argmax.
The pairs are grouped by class; for each class the images that need it go through the library in
batches with one ``ClassifierOutputTarget(class)`` per image, so Grad-CAM costs one forward and one
backward pass per class per batch instead of one per pair.

>>> import torch, backbones
>>> model = backbones.create_model("test_resnet", num_classes=3)
>>> maps = compute_cams(model, "test_resnet", torch.randn(2, 1, 64, 64), [(0, 2), (1, 0), (0, 0)])
>>> maps.shape, maps.dtype
((3, 64, 64), dtype('float32'))

Library: pytorch-grad-cam (``grad-cam`` on PyPI) rather than torchcam
--------------------------------------------------------------------
* Maintenance: both are maintained (grad-cam 1.5.x, torchcam 0.5 released recently); grad-cam is
  by far the more widely used (several times the GitHub stars) and was already a declared
  dependency. torchcam 0.5 adds Vision-Transformer methods; grad-cam reads ViT and Swin layers through
  a ``reshape_transform`` (its documented usage), which :func:`backbones.cam_target` supplies.
* Multi-target batches: grad-cam takes one target callable per batch element, so a batch of images
  that all need class ``c`` is one forward and one backward; torchcam's ``class_idx`` list per batch
  element does the same for gradient methods, but the caller runs the forward itself and upsamples
  the feature-resolution maps by hand.
* Methods: grad-cam offers Grad-CAM, HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM,
  Ablation-CAM, Eigen-CAM, FullGrad and more; torchcam offers CAM, Grad-CAM, Grad-CAM++,
  Smooth Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM, SS-CAM and IS-CAM. Both cover the three here.
* Hooks: grad-cam registers forward hooks (plus tensor hooks for gradients) and removes them in
  ``release()``; torchcam removes them in ``remove_hooks()``. Both work as context managers.
* Licence: grad-cam is MIT, torchcam Apache-2.0; both are fine for this MIT project.

Picked: grad-cam, for its per-element targets with the forward, backward and upsampling done by
the library, its wider use and method list, and because it was already a dependency; its rough
edges (below) are cheap to wrap.

What this module adds around grad-cam, because of how the library behaves:

* ``BaseCAM.__init__`` calls ``model.eval()`` and never restores the mode: every module's
  ``training`` flag is saved and restored here.
* ``BaseCAM.__exit__`` swallows an ``IndexError`` (a bad class index) and prints it, so the
  context manager is not used; ``release()`` runs in a ``finally`` instead.
* ``BaseCAM.forward`` calls ``model.zero_grad()``, which would wipe the caller's ``.grad``: the
  parameters' gradients and ``requires_grad`` flags are stashed and restored, and the parameters
  are frozen during the call, so no weight gradient is ever computed or accumulated.
* A forward hook on the CAM layer starts the autograd graph there (a detached copy of the
  activation that requires grad). Grad-CAM only needs the gradient at that layer, so the backward
  pass runs through the head alone, and frozen models or ``torch.no_grad()`` callers work too.
* The library's Score-CAM draws a tqdm bar per image on stderr, keeps the activations of every
  masked forward pass, and builds all B x C masked images at once (gigabytes for DenseNet at
  224 px); ``QuietScoreCAM`` computes the same weights for one image and ``batch_size`` channels
  at a time (tested against the library's ``ScoreCAM``). ``batch_size`` therefore also counts the
  masked copies of one image per forward pass.

Maps are min-max normalised per map by the library (so a map's minimum is 0 and its maximum 1,
unless the map is constant, in which case it is all 0) and bilinearly upsampled to the input size.
Prefer input sides that are multiples of 32: otherwise some networks (ConvNeXt) drop the last
pixels in their strided convolutions, and the upsampled map is slightly stretched.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import backbones
from backbones.camlayer import module_at
from bench.cam_methods import CAM_METHODS, CAMS

__all__ = ["METHODS", "compute_cams", "compute_cams_per_image"]

METHODS = CAM_METHODS  # ("gradcam", "gradcam++", "scorecam"), named where config can read them without torch


class QuietScoreCAM(ScoreCAM):
    """The library's Score-CAM weights, computed image by image without a progress bar."""

    batch_size: int = 32

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads) -> np.ndarray:
        store = self.activations_and_grads.activations
        size = input_tensor.shape[-2:]
        weights = []
        with torch.no_grad():
            for image, acts, target in zip(input_tensor, torch.from_numpy(activations), targets):
                scores = []
                for start in range(0, acts.shape[0], self.batch_size):  # a chunk of channels at a time
                    chunk = acts[None, start:start + self.batch_size].to(self.device)
                    up = torch.nn.functional.interpolate(chunk, size=size, mode="bilinear",
                                                         align_corners=True)[0]  # = UpsamplingBilinear2d
                    lo = up.flatten(1).min(dim=-1).values[:, None, None]
                    hi = up.flatten(1).max(dim=-1).values[:, None, None]
                    masked = image[None] * ((up - lo) / (hi - lo + 1e-8))[:, None]
                    scores.append(torch.stack([target(o) for o in self.model(masked)]).float().cpu())
                    store.clear()  # the CAM layer's hook saved this pass's activations: not needed
                weights.append(torch.softmax(torch.cat(scores), dim=-1))
        return torch.stack(weights).numpy()


def _start_graph_here(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook: the CAM layer's output becomes the root of the autograd graph."""
    if not torch.is_grad_enabled():
        return None
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the CAM layer {type(module).__name__} returns {type(output).__name__}, not a tensor")
    return output.detach().requires_grad_(True).clone()  # clone: later in-place ops must not hit a leaf


@contextlib.contextmanager
def _cam_session(model: torch.nn.Module, backbone: str, method: str, device: torch.device | str | None,
                 batch_size: int, image_hw: tuple[int, int]) -> Iterator[Callable[[torch.Tensor, int], np.ndarray]]:
    """Hooks set, model in eval mode with frozen parameters; yields ``run(batch, class) -> maps`` for
    ``image_hw`` (H, W) images, read at the layer :func:`backbones.cam_target` finds for that size.

    On exit everything is put back: hooks removed, ``training`` flags, ``requires_grad`` flags and
    ``.grad`` tensors restored exactly.
    """
    if method not in CAMS:
        raise ValueError(f"unknown CAM method {method!r} (choose from: {', '.join(METHODS)})")
    target = backbones.cam_target(model, backbone, image_hw)
    layer = module_at(model, target.layer)
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters")
    model_device = params[0].device
    wanted = torch.device(device) if device is not None else model_device
    if wanted.type != model_device.type or wanted.index not in (None, model_device.index):  # "cuda" matches "cuda:0"
        raise ValueError(f"device {str(device)!r} differs from the model's device {str(model_device)!r}; "
                         "move the model first")
    dtype = params[0].dtype
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad, p.grad) for p in params]
    handle, cam = None, None
    try:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        handle = layer.register_forward_hook(_start_graph_here)
        cam = CAMS.get(method).load()(model=model, target_layers=[layer],  # its hooks run after ours
                                      reshape_transform=target.reshape_transform)
        cam.batch_size = batch_size
        model.eval()

        def run(batch: torch.Tensor, cls: int) -> np.ndarray:
            batch = batch.detach().to(device=model_device, dtype=dtype)
            targets = [ClassifierOutputTarget(cls) for _ in range(len(batch))]
            grad_mode = torch.no_grad() if method == "scorecam" else torch.enable_grad()
            with torch.inference_mode(False), grad_mode:
                maps = cam(input_tensor=batch, targets=targets)
            cam.outputs = None  # drop the graph the library keeps until the next call
            cam.activations_and_grads.clear()
            return np.clip(np.nan_to_num(maps, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)

        yield run
    finally:
        if cam is not None:
            cam.activations_and_grads.release()
        if handle is not None:
            handle.remove()
        for p, requires_grad, grad in flags:
            p.requires_grad_(requires_grad)
            p.grad = grad
        for m, training in modes:
            m.training = training


def _check(model: torch.nn.Module, images: torch.Tensor, targets: Sequence[tuple[int, int]],
           batch_size: int) -> list[tuple[int, int]]:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_classes = getattr(model, "num_classes", None)
    pairs = []
    for pair in targets:
        row, cls = (int(v) for v in pair)
        if not 0 <= row < len(images):
            raise ValueError(f"target {tuple(pair)}: image row {row} is outside 0..{len(images) - 1}")
        if cls < 0 or (isinstance(n_classes, int) and cls >= n_classes):
            raise ValueError(f"target {tuple(pair)}: class {cls} is outside 0..{n_classes}-1")
        pairs.append((row, cls))
    return pairs


def compute_cams(model: torch.nn.Module, backbone: str, images: torch.Tensor,
                 targets: Sequence[tuple[int, int]], *, method: str = "gradcam", batch_size: int = 32,
                 device: torch.device | str | None = None) -> np.ndarray:
    """Class-activation maps for explicit ``(image_row, class_index)`` pairs, batched per class.

    ``images`` is (N, 1, H, W), normalised as the model expects (a ViT built for H x W:
    ``backbones.create_model(..., image_size=)``); ``backbone`` names the backbone whose CAM layer is read
    (``backbones.cam_target``: a registered ``cam_layer``, a shallower stage when the images are too small
    for it, a transformer's last ``norm1``). Returns (len(targets), H, W) float32 maps in [0, 1] in the
    order of ``targets``. ``device`` defaults to the model's and must equal it (the model is not
    moved); images are moved batch by batch. The model's modes, ``requires_grad`` flags and
    gradients are left as they were, and no hook is left on it.

    >>> import torch, backbones
    >>> model = backbones.create_model("test_resnet", num_classes=4)
    >>> compute_cams(model, "test_resnet", torch.randn(3, 1, 64, 80), [(2, 3), (0, 1)]).shape
    (2, 64, 80)
    """
    pairs = _check(model, images, targets, batch_size)
    height, width = images.shape[-2:]
    out = np.zeros((len(pairs), height, width), dtype=np.float32)
    if not pairs:
        return out
    by_class: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for position, (row, cls) in enumerate(pairs):
        by_class[cls][row].append(position)  # a repeated pair is computed once
    with _cam_session(model, backbone, method, device, batch_size, (int(height), int(width))) as run:
        for cls, positions_by_row in by_class.items():
            rows = list(positions_by_row)
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                index = torch.as_tensor(chunk, dtype=torch.long, device=images.device)
                maps = run(images.index_select(0, index), cls)
                for row, cam in zip(chunk, maps):
                    out[positions_by_row[row]] = cam
    return out


def compute_cams_per_image(model: torch.nn.Module, backbone: str, images: torch.Tensor,
                           targets: Sequence[tuple[int, int]], *, method: str = "gradcam",
                           batch_size: int = 32, device: torch.device | str | None = None) -> np.ndarray:
    """The naive baseline: one library call per ``(image, class)`` pair; same output as
    :func:`compute_cams`. Used only to measure the speed-up of batching.

    >>> import torch, backbones
    >>> model = backbones.create_model("test_resnet", num_classes=2)
    >>> compute_cams_per_image(model, "test_resnet", torch.randn(1, 1, 32, 32), [(0, 1)]).shape
    (1, 32, 32)
    """
    pairs = _check(model, images, targets, batch_size)
    out = np.zeros((len(pairs), *images.shape[-2:]), dtype=np.float32)
    if not pairs:
        return out
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    with _cam_session(model, backbone, method, device, batch_size, hw) as run:
        for position, (row, cls) in enumerate(pairs):
            out[position] = run(images[row:row + 1], cls)[0]
    return out
