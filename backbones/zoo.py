"""Model construction with timm (imports torch)."""

from __future__ import annotations

import sys
from pathlib import Path


def import_timm():
    """``timm``, imported without W&B's client.

    When ``wandb`` is installed (the ``tracking`` extra), importing timm imports it too (``timm.utils.summary``),
    only for the logging of timm's own training scripts, which nothing here calls: about a second of CPU in every
    process that builds a model, each Ray trial worker among them. While timm loads, ``import wandb`` fails as if
    W&B were not installed (timm expects that); afterwards it imports as usual (the W&B logger of ``tracking``)."""
    if "timm" not in sys.modules and "wandb" not in sys.modules:
        sys.modules["wandb"] = None  # type: ignore[assignment]  # `import wandb` raises ImportError
        try:
            import timm  # noqa: F401
        finally:
            if "wandb" in sys.modules and sys.modules["wandb"] is None:
                del sys.modules["wandb"]
    import timm

    return timm


def build(timm_name: str, *, num_classes: int, pretrained: bool | str = False, drop_rate: float = 0.0,
          image_size: int | tuple[int, int] | None = None):
    """``timm.create_model`` with ``in_chans=1`` and ``num_classes`` outputs; a local weights file is passed
    through timm's ``pretrained_cfg_overlay`` so that timm adapts the first convolution (RGB -> 1 channel,
    summed) and drops a classifier of the wrong size, exactly as for hub weights. A model with a fixed input
    size (``set_input_size``: ViT, Swin, MaxViT, ...) is set to ``image_size``, its position embeddings
    resampled by timm."""
    timm = import_timm()

    kwargs = dict(in_chans=1, num_classes=num_classes, drop_rate=drop_rate)
    if isinstance(pretrained, (str, Path)) and str(pretrained) not in ("", "False", "false"):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
        model = timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    else:
        model = timm.create_model(timm_name, pretrained=bool(pretrained), **kwargs)
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise ValueError(f"timm model {timm_name!r} built {model.num_classes} outputs, not num_classes={num_classes}")
    if image_size is not None and "img_size" in _parameters(getattr(model, "set_input_size", None)):
        size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
        model.set_input_size(img_size=size)
    return model


def _parameters(method) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(method).parameters) if callable(method) else ()
