"""Backbones: timm models built for one-channel X-rays with one output per label.

A grid may name **any** model of ``timm.list_models()``. The registered ones (``bench list backbones``) add a
one-line description, the tested layer Grad-CAM reads (``cam_layer``, a dotted attribute path) and a ``tiny`` mark
for timm's test models; any other timm name gets the same treatment found automatically: timm builds it with
``in_chans=1`` and a ``num_classes``-wide classifier, and :mod:`backbones.camlayer` finds its Grad-CAM layer (a CNN's
deepest feature stage, a ViT's last ``norm1`` with the token reshape, a Swin's last ``norm1`` in NHWC). Listing and
checking registered names imports neither torch nor timm; an unregistered name is checked against timm's list.

>>> from backbones import list_backbones
>>> [e.name for e in list_backbones("resnet*")]
['resnet18', 'resnet34', 'resnet50']
>>> check_backbone("vit_tiny_patch16_224")  # any timm model
>>> check_backbone("resnet181")
Traceback (most recent call last):
...
backbones.UnknownBackboneError: unknown backbone 'resnet181'; did you mean 'resnet18' or 'resnet18d' or 'resnet101'? ...
"""

from __future__ import annotations

from backbones.camlayer import MIN_CAM_CELLS, CamLayerError, CamTarget
from strategies._registry import Registry, UnknownNameError, did_you_mean, natural_key

BACKBONES = Registry("backbone")

__all__ = ["BACKBONES", "UnknownNameError", "UnknownBackboneError", "CamLayerError", "CamTarget",
           "register_backbone", "list_backbones", "get_backbone", "check_backbone", "timm_name", "list_timm",
           "create_model", "cam_layer", "cam_layer_name", "cam_target", "MIN_CAM_CELLS"]


class UnknownBackboneError(UnknownNameError):
    """A name that is neither registered nor a timm model; close matches come from both."""

    def __str__(self) -> str:
        where = "(a registered backbone, bench list backbones, or any timm model, bench list backbones --all)"
        starts = [c for c in self.choices if isinstance(self.name, str) and self.name and c.startswith(self.name)]
        if starts:  # a name cut short: the models it begins
            hint = "; did you mean " + " or ".join(repr(c) for c in starts[:3]) + "?"
            if len(starts) > 3:
                where = f"({len(starts)} models start so: bench list backbones --all '{self.name}*')"
        else:
            hint = did_you_mean(self.name, self.choices, n=3, cutoff=0.5, fold_case=False)
        return f"unknown backbone {self.name!r}{hint} {where}"


def register_backbone(name: str, *, description: str, cam_layer: str, timm_name: str | None = None,
                      tiny: bool = False) -> None:
    """Declare a backbone. ``tiny`` marks timm's test models, used by the fast tests."""
    BACKBONES.register(name, "backbones.zoo:build", description=description,
                       timm_name=timm_name or name, cam_layer=cam_layer, tiny=tiny)


def list_backbones(pattern: str | None = None):
    return BACKBONES.list(pattern)


def get_backbone(name: str):
    return BACKBONES.get(name)


def timm_name(name: str) -> str:
    """The timm model that backbone ``name`` builds: a registered entry's, else ``name`` itself if timm has it
    (a pretrained tag such as ``vit_small_patch16_224.augreg_in21k`` included); else
    :class:`UnknownBackboneError` with close matches among the registered and timm names."""
    if name in BACKBONES:
        return BACKBONES.get(name).meta["timm_name"]
    from backbones.zoo import import_timm

    timm = import_timm()
    if isinstance(name, str) and timm.is_model(name):
        return name
    raise UnknownBackboneError("backbone", name, sorted(set(BACKBONES.names()) | set(timm.list_models()),
                                                        key=natural_key))


def check_backbone(name: str) -> None:
    """Raise :class:`UnknownBackboneError` unless ``name`` is registered or a timm model (:func:`timm_name`)."""
    timm_name(name)


def list_timm(pattern: str | None = None) -> list[tuple[str, object]]:
    """timm's model names matching the shell-style ``pattern`` (fnmatch), each with its registry entry or ``None``.

    >>> [(n, e is not None) for n, e in list_timm("test_conv*")]
    [('test_convnext', True), ('test_convnext2', False), ('test_convnext3', False)]
    """
    from backbones.zoo import import_timm

    timm = import_timm()
    return [(n, BACKBONES.get(n) if n in BACKBONES else None) for n in timm.list_models(pattern or "*")]


def create_model(name: str, num_classes: int, *, pretrained: bool | str = False, drop_rate: float = 0.0,
                 image_size: int | tuple[int, int] | None = None):
    """Build backbone ``name`` (registered, or any timm model) for 1-channel input and ``num_classes`` logits.

    ``pretrained`` is ``False``, ``True`` (timm's hub weights, needs network or a filled cache) or a path to a
    local ``.pth`` / ``.safetensors`` file. ``image_size`` (a side, or (H, W)) sets the input size of a model that
    has a fixed one (a ViT's or Swin's position embeddings and patch grid, through timm's ``set_input_size``);
    CNNs take any size and ignore it.

    >>> m = create_model("test_vit", num_classes=3, image_size=64)
    >>> m.patch_embed.proj.in_channels, m.get_classifier().out_features, m.patch_embed.grid_size
    (1, 3, (4, 4))
    """
    from backbones.zoo import build

    return build(timm_name(name), num_classes=num_classes, pretrained=pretrained, drop_rate=drop_rate,
                 image_size=image_size)


def _declared(name: str) -> str | None:
    return BACKBONES.get(name).meta["cam_layer"] if name in BACKBONES else None


def cam_layer_name(model, name: str, image_size: int | None = None) -> str:
    """The dotted path of the module Grad-CAM reads for backbone ``name`` (:mod:`backbones.camlayer`).

    A CNN's registered ``cam_layer`` (the last stage; an unregistered model's deepest ``feature_info`` stage),
    unless at ``image_size`` px its map would have fewer than :data:`MIN_CAM_CELLS` cells per side: then the
    deepest of timm's feature stages (``model.feature_info``) whose map has that many (the shallowest stage if
    none has). A model without ``feature_info`` keeps its layer. A ViT's is its last block's ``norm1``.

    >>> import backbones
    >>> m = backbones.create_model("test_resnet", num_classes=2)
    >>> cam_layer_name(m, "test_resnet"), cam_layer_name(m, "test_resnet", 224), cam_layer_name(m, "test_resnet", 48)
    ('layer4', 'layer4', 'layer2')
    """
    from backbones.camlayer import _choose

    return _choose(model, name, image_size, _declared(name))[0]


def cam_layer(model, name: str, image_size: int | None = None):
    """The module Grad-CAM reads for backbone ``name`` at ``image_size`` px (:func:`cam_layer_name`)."""
    from backbones.camlayer import module_at

    return module_at(model, cam_layer_name(model, name, image_size))


def cam_target(model, name: str, image_size: int | tuple[int, int]) -> CamTarget:
    """Backbone ``name``'s Grad-CAM layer, layout and map grid at ``image_size`` px
    (:func:`backbones.camlayer.cam_target`, with a registered backbone's declared ``cam_layer``)."""
    from backbones.camlayer import cam_target as target

    return target(model, name, image_size, declared=_declared(name))


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
