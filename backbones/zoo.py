"""Model construction with timm (imports torch)."""

from __future__ import annotations

from pathlib import Path


def build(timm_name: str, *, num_classes: int, pretrained: bool | str = False, drop_rate: float = 0.0):
    """``timm.create_model`` with ``in_chans=1``; a local weights file is passed through timm's
    ``pretrained_cfg_overlay`` so that timm adapts the first convolution (RGB -> 1 channel, summed)
    and drops a classifier of the wrong size, exactly as for hub weights."""
    import timm

    kwargs = dict(in_chans=1, num_classes=num_classes, drop_rate=drop_rate)
    if isinstance(pretrained, (str, Path)) and str(pretrained) not in ("", "False", "false"):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    return timm.create_model(timm_name, pretrained=bool(pretrained), **kwargs)
