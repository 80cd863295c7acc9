"""Backbones: timm models built for one-channel X-rays with one output per label.

Each entry declares the timm model, a one-line description and the layer Grad-CAM reads
(``cam_layer``, a dotted attribute path). Listing imports neither torch nor timm.

>>> from backbones import list_backbones
>>> [e.name for e in list_backbones("resnet*")]
['resnet18', 'resnet34', 'resnet50']
"""

from __future__ import annotations

from strategies._registry import Registry, UnknownNameError

BACKBONES = Registry("backbone")

__all__ = ["BACKBONES", "UnknownNameError", "register_backbone", "list_backbones", "get_backbone",
           "create_model", "cam_layer", "cam_layer_name", "MIN_CAM_CELLS"]


def register_backbone(name: str, *, description: str, cam_layer: str, timm_name: str | None = None,
                      tiny: bool = False) -> None:
    """Declare a backbone. ``tiny`` marks timm's test models, used by the fast tests."""
    BACKBONES.register(name, "backbones.zoo:build", description=description,
                       timm_name=timm_name or name, cam_layer=cam_layer, tiny=tiny)


def list_backbones(pattern: str | None = None):
    return BACKBONES.list(pattern)


def get_backbone(name: str):
    return BACKBONES.get(name)


def create_model(name: str, num_classes: int, *, pretrained: bool | str = False, drop_rate: float = 0.0):
    """Build backbone ``name`` for 1-channel input and ``num_classes`` logits.

    ``pretrained`` is ``False``, ``True`` (timm's hub weights, needs network or a filled cache) or
    a path to a local ``.pth`` / ``.safetensors`` file.
    """
    from backbones.zoo import build

    entry = BACKBONES.get(name)
    return build(entry.meta["timm_name"], num_classes=num_classes, pretrained=pretrained, drop_rate=drop_rate)


#: The smallest CAM, in feature-map cells per side, that the localisation scores can use. Grad-CAM reads a CNN's
#: last stage, 7 x 7 at 224 px; at the demo's 48 px that stage is 2 x 2, and a map upsampled from 2 x 2 has its
#: maximum on a 12 px corner plateau whatever the image shows, so the pointing game cannot find anything.
MIN_CAM_CELLS = 6


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


def cam_layer_name(model, name: str, image_size: int | None = None) -> str:
    """The dotted path of the module Grad-CAM reads for backbone ``name``.

    The registry's ``cam_layer`` (the last stage), unless at ``image_size`` px its map would have fewer than
    :data:`MIN_CAM_CELLS` cells per side: then the deepest of timm's feature stages (``model.feature_info``) whose
    map has that many (the shallowest stage if none has). A model without ``feature_info`` keeps its layer.

    >>> import backbones
    >>> m = backbones.create_model("test_resnet", num_classes=2)
    >>> cam_layer_name(m, "test_resnet"), cam_layer_name(m, "test_resnet", 224), cam_layer_name(m, "test_resnet", 48)
    ('layer4', 'layer4', 'layer2')
    """
    declared = BACKBONES.get(name).meta["cam_layer"]
    stages = _stages(model)
    if image_size is None or not stages:
        return declared
    cells = lambda stride: -(-int(image_size) // stride)  # noqa: E731 - ceil, as a stride-s stage rounds up
    if cells(max(r for _, r in stages)) >= MIN_CAM_CELLS:
        return declared
    fine = [m for m, r in stages if cells(r) >= MIN_CAM_CELLS]
    return fine[-1] if fine else stages[0][0]


def cam_layer(model, name: str, image_size: int | None = None):
    """The module Grad-CAM reads for backbone ``name`` at ``image_size`` px (:func:`cam_layer_name`)."""
    obj = model
    for part in cam_layer_name(model, name, image_size).split("."):
        obj = obj[int(part)] if part.lstrip("-").isdigit() else getattr(obj, part)
    return obj


# ---- the zoo -----------------------------------------------------------------------------------
register_backbone("resnet18", description="ResNet-18 (11M params), the classic small CNN baseline", cam_layer="layer4")
register_backbone("resnet34", description="ResNet-34 (21M params)", cam_layer="layer4")
register_backbone("resnet50", description="ResNet-50 (24M params), the common mid-size CNN", cam_layer="layer4")
register_backbone("densenet121", description="DenseNet-121 (7M params), CheXNet's backbone", cam_layer="features")
register_backbone("efficientnet_b0", description="EfficientNet-B0 (4M params), compound-scaled", cam_layer="bn2")
register_backbone("mobilenetv3_small_100", description="MobileNetV3-Small (1.5M params), the fastest real model",
                  cam_layer="blocks")
register_backbone("convnext_nano", description="ConvNeXt-Nano (15M params), a modern CNN", cam_layer="stages")
register_backbone("test_resnet", description="timm's tiny test ResNet (0.4M params), for fast tests",
                  cam_layer="layer4", tiny=True)
register_backbone("test_efficientnet", description="timm's tiny test EfficientNet (0.1M params), for fast tests",
                  cam_layer="bn2", tiny=True)
register_backbone("test_convnext", description="timm's tiny test ConvNeXt (0.2M params), for fast tests",
                  cam_layer="stages", tiny=True)
