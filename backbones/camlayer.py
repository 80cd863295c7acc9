"""Which layer Grad-CAM reads in a timm model, and how its output becomes a (N, C, h, w) map.

Three layouts, told apart from what timm declares about the model (no name lists):

* ``NCHW`` (CNNs: ResNet, DenseNet, EfficientNet, ConvNeXt, ByobNet, NFNet, CoAtNet / MaxViT, ...): a stage of
  timm's ``model.feature_info``, read as it is. A registered backbone's ``cam_layer`` is its declared layer; any
  other model's is its deepest feature stage.
* ``tokens`` (ViT, DeiT, BEiT, EVA: a model with ``patch_embed``, ``blocks`` and ``num_prefix_tokens``): the
  **last block's first norm**, ``blocks.<last>.norm1``, as pytorch-grad-cam's documentation recommends (the class
  token is computed in the last attention block, so the patch tokens' gradient at the last block's *output* is
  0 for a class-token head). Its (N, 1 + h*w, C) output loses the ``num_prefix_tokens`` class / register /
  distillation tokens and is reshaped to the patch grid, (N, C, h, w) with h, w = image side / patch side.
* ``NHWC`` (Swin, MambaOut: ``model.output_fmt == "NHWC"``): a feature stage, through its last block's
  ``norm1`` where it has one (Swin: ``layers.<last>.blocks.<last>.norm1``, the documentation's choice); the
  (N, h, w, C) output is permuted to (N, C, h, w).

At a small image size a CNN's or Swin's last stage has too few cells for a useful map (a 2 x 2 map upsampled has
its maximum on a corner plateau): the CAM then reads the deepest stage with at least :data:`MIN_CAM_CELLS` cells per
side. A ViT has one grid, the patch grid; when that (or a CNN's shallowest stage) is below the minimum,
:func:`cam_target` says so in ``warning`` (recorded in each trial's ``metrics.json`` ``cam``) and the maps are kept.

>>> import backbones
>>> vit = backbones.create_model("test_vit", num_classes=2, image_size=96)
>>> t = cam_target(vit, "test_vit", 96)
>>> t.layer, t.layout, t.prefix_tokens, t.grid, t.warning
('blocks.5.norm1', 'tokens', 1, (6, 6), None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The smallest CAM, in feature-map cells per side, that the localisation scores can use. Grad-CAM reads a CNN's
#: last stage, 7 x 7 at 224 px; at the demo's 48 px that stage is 2 x 2, and a map upsampled from 2 x 2 has its
#: maximum on a 12 px corner plateau whatever the image shows, so the pointing game cannot find anything.
MIN_CAM_CELLS = 6

LAYOUTS = ("NCHW", "NHWC", "tokens")


class CamLayerError(ValueError):
    """A model whose Grad-CAM layer cannot be found or read as a 2-D map; the message says why."""


def _hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, (tuple, list)):
        h, w = (int(v) for v in image_size)
        return h, w
    return int(image_size), int(image_size)


def layout(model) -> str:
    """``"tokens"`` (ViT-like), ``"NHWC"`` (Swin-like) or ``"NCHW"`` (a CNN), from what timm declares on ``model``."""
    if all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens")):
        return "tokens"
    if str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC":
        return "NHWC"
    return "NCHW"


def _stages(model) -> list[tuple[str, int]]:
    """timm's feature stages of ``model``: (module path, stride), shallow to deep ([] if it declares none)."""
    info = getattr(model, "feature_info", None) or []
    out = []
    for f in info:
        try:
            out.append((str(f["module"]), int(f["reduction"])))
        except (KeyError, TypeError, ValueError):
            return []
    return out


def module_at(model, path: str):
    """The submodule at dotted ``path`` (integers index sequences: ``blocks.5.norm1``)."""
    obj = model
    for part in path.split("."):
        obj = obj[int(part)] if part.lstrip("-").isdigit() else getattr(obj, part)
    return obj


def _last_norm1(model, stage: str) -> str:
    """``<stage>.blocks.<last>.norm1`` where the stage's last block has a ``norm1`` (Swin), else ``stage``."""
    blocks = getattr(module_at(model, stage), "blocks", None)
    if blocks is not None and len(blocks) and hasattr(blocks[-1], "norm1"):
        return f"{stage}.blocks.{len(blocks) - 1}.norm1"
    return stage


def _cells(side: int, stride: int) -> int:
    return -(-int(side) // stride)  # ceil, as a stride-s stage rounds up


def _choose(model, name: str, image_size: int | tuple[int, int] | None, declared: str | None) -> tuple[str, str]:
    """(layer, declared layer) of ``model`` at ``image_size`` px; ``declared`` is a registered backbone's
    ``cam_layer`` (``None`` for any other timm model)."""
    kind = layout(model)
    if kind == "tokens":
        blocks = model.blocks
        if not len(blocks) or not hasattr(blocks[-1], "norm1"):
            raise CamLayerError(f"backbone {name!r}: its last transformer block has no norm1 for Grad-CAM to read")
        layer = f"blocks.{len(blocks) - 1}.norm1"
        return layer, layer
    stages = _stages(model)
    if declared is None:
        if not stages:
            raise CamLayerError(f"backbone {name!r}: timm declares no feature stages (model.feature_info) to read a "
                                "Grad-CAM map from; register it with a cam_layer (backbones.register_backbone)")
        declared = stages[-1][0]
    wrap = (lambda stage: _last_norm1(model, stage)) if kind == "NHWC" else (lambda stage: stage)
    if image_size is None or not stages:
        return wrap(declared), wrap(declared)
    side = min(_hw(image_size))
    if _cells(side, max(r for _, r in stages)) >= MIN_CAM_CELLS:
        return wrap(declared), wrap(declared)
    fine = [m for m, r in stages if _cells(side, r) >= MIN_CAM_CELLS]
    return wrap(fine[-1] if fine else stages[0][0]), wrap(declared)


@dataclass(frozen=True)
class CamTarget:
    """The layer Grad-CAM reads, how its output is laid out, and the grid of the maps it gives.

    ``layer`` is a dotted module path; ``declared_layer`` the one used where the image is large enough (a
    registered backbone's ``cam_layer``, else the automatic choice at full size); ``layout`` one of
    :data:`LAYOUTS`; ``grid`` the map's (rows, columns) before upsampling to the image; ``prefix_tokens`` the
    tokens dropped before the reshape (``tokens`` layout); ``warning`` says when the grid is below
    :data:`MIN_CAM_CELLS` per side.
    """

    layer: str
    declared_layer: str
    layout: str
    grid: tuple[int, int]
    image: tuple[int, int]
    prefix_tokens: int = 0
    warning: str | None = None

    def reshape(self, tensor):
        """The layer's output (or its gradient) as (N, C, h, w), what pytorch-grad-cam's ``reshape_transform``
        returns: prefix tokens dropped and the rest laid on the patch grid, or NHWC permuted."""
        if self.layout == "NCHW":
            return tensor
        if self.layout == "NHWC":
            return tensor.permute(0, 3, 1, 2)
        h, w = self.grid
        patches = tensor[:, self.prefix_tokens:, :]
        if patches.shape[1] != h * w:
            raise CamLayerError(f"layer {self.layer!r}: {patches.shape[1]} patch tokens after dropping "
                                f"{self.prefix_tokens} prefix token(s), not the {h} x {w} grid of a "
                                f"{self.image[0]} x {self.image[1]} image")
        return patches.reshape(tensor.shape[0], h, w, tensor.shape[2]).permute(0, 3, 1, 2)

    @property
    def reshape_transform(self):
        """``None`` for a CNN layer, else :meth:`reshape` (pytorch-grad-cam's ``reshape_transform`` argument)."""
        return None if self.layout == "NCHW" else self.reshape

    def as_dict(self) -> dict[str, Any]:
        """What a trial's ``metrics.json`` records under ``cam``."""
        out = {"layer": self.layer, "declared_layer": self.declared_layer, "layout": self.layout,
               "grid": list(self.grid), "image": list(self.image), "min_cells": MIN_CAM_CELLS}
        if self.layout == "tokens":
            out["prefix_tokens"] = self.prefix_tokens
        if self.warning:
            out["warning"] = self.warning
        return out


def _in_chans(model) -> int:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    raise CamLayerError(f"{type(model).__name__} has no convolution to read its input channels from")


def _probe(model, layer: str, hw: tuple[int, int]) -> tuple[int, ...]:
    """The shape of ``layer``'s output for one blank ``hw`` image (eval mode, no gradient; modes restored)."""
    import torch

    module = module_at(model, layer)
    param = next(model.parameters())
    seen: list[tuple[int, ...]] = []

    def keep(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            seen.append(tuple(output.shape))

    modes = [(m, m.training) for m in model.modules()]
    handle = module.register_forward_hook(keep)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, _in_chans(model), *hw, device=param.device, dtype=param.dtype))
    finally:
        handle.remove()
        for m, training in modes:
            m.training = training
    if not seen:
        raise CamLayerError(f"layer {layer!r} returned no tensor")
    return seen[0]


def _token_grid(model, hw: tuple[int, int]) -> tuple[int, int]:
    pe = model.patch_embed
    if hasattr(pe, "dynamic_feat_size"):
        return tuple(int(v) for v in pe.dynamic_feat_size(hw))
    return tuple(int(v) for v in pe.grid_size)


def cam_target(model, name: str, image_size: int | tuple[int, int], *, declared: str | None = None) -> CamTarget:
    """The :class:`CamTarget` of ``model`` (backbone ``name``) for ``image_size`` px images (a side, or (H, W)).

    Runs one blank image through the model to read the layer's output shape, and raises :class:`CamLayerError`
    when it is not what the layout needs (a 4-D map, or prefix + h*w tokens).

    >>> import backbones
    >>> cnn = backbones.create_model("test_resnet", num_classes=2)
    >>> t = cam_target(cnn, "test_resnet", (64, 96), declared="layer4")
    >>> t.layer, t.declared_layer, t.layout, t.grid
    ('layer2', 'layer4', 'NCHW', (8, 12))
    """
    hw = _hw(image_size)
    layer, declared_layer = _choose(model, name, hw, declared)
    kind = layout(model)
    shape = _probe(model, layer, hw)
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0) if kind == "tokens" else 0
    if kind == "tokens":
        grid = _token_grid(model, hw)
        if len(shape) != 3 or shape[1] != prefix + grid[0] * grid[1]:
            raise CamLayerError(f"backbone {name!r}: layer {layer!r} returns {shape}, not (N, {prefix} prefix + "
                                f"{grid[0]} x {grid[1]} patch tokens, C) at {hw[0]} x {hw[1]} px")
    elif len(shape) != 4:
        raise CamLayerError(f"backbone {name!r}: layer {layer!r} returns {shape}, not a 4-D {kind} map; Grad-CAM "
                            "reads CNNs and ViT / DeiT / Swin-style transformers (set localisation.enabled: false)")
    else:
        grid = (shape[2], shape[3]) if kind == "NCHW" else (shape[1], shape[2])
    warning = None
    if min(grid) < MIN_CAM_CELLS:
        why = (f"the patch grid of {hw[0] // grid[0]} px patches" if kind == "tokens"
               else "timm's shallowest feature stage" if layer != declared_layer else "its CAM layer")
        warning = (f"backbone {name!r} at {hw[0]} x {hw[1]} px: Grad-CAM reads {layer!r} ({why}), a {grid[0]} x "
                   f"{grid[1]} map, below {MIN_CAM_CELLS} cells per side: the upsampled maps are coarse blocks and "
                   "their box scores near chance; use a larger dataset.image_size")
    return CamTarget(layer=layer, declared_layer=declared_layer, layout=kind, grid=(int(grid[0]), int(grid[1])),
                     image=hw, prefix_tokens=prefix, warning=warning)
