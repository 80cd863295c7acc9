"""Plain PyTorch training and prediction: no Ray here, so it can be tested and timed alone.

Images come from the uint8 cache as (N, S, S) arrays; batches are gathered, converted and
normalised on the fly (on the GPU when there is one), optionally through a DataLoader with
worker processes and pinned memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

# Grayscale normalisation: the mean of ImageNet's channel statistics (timm sums pretrained RGB
# filters into one channel, so these match pretrained weights as well as any).
MEAN, STD = 0.449, 0.226


@dataclass
class Device:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    @property
    def scales_gradients(self) -> bool:
        """fp16 autocast needs a gradient scaler (bf16 and fp32 do not)."""
        return self.autocast_dtype == torch.float16

    @classmethod
    def resolve(cls, *, gpu: float, precision: str = "auto", channels_last: str | bool = "auto",
                fake_gpus: bool = False) -> "Device":
        """The device a trial with ``resources.gpu: gpu`` trains on, and its autocast precision.

        ``gpu > 0`` without a CUDA device torch can use raises :class:`bench.devices.DeviceUnavailable` (one
        line: node, assigned GPUs, driver, torch's CUDA build, what to do); never a silent CPU fallback. Only
        ``fake_gpus`` (the project's tests of fractional GPU scheduling on a machine without one) trains such a
        trial on the CPU. ``precision="auto"``: bf16 on a GPU that has it natively, fp16 with a gradient
        scaler on one that does not (V100, T4), fp32 on a CPU; ``"bf16"`` / ``"fp32"`` as asked.
        """
        use_cuda = gpu > 0 and torch.cuda.is_available()
        if gpu > 0 and not use_cuda and not fake_gpus:
            from bench.devices import DeviceUnavailable, cuda_report, no_gpu_message

            raise DeviceUnavailable(no_gpu_message(gpu, cuda_report()))
        dev = torch.device("cuda" if use_cuda else "cpu")
        if precision == "bf16":
            dtype = torch.bfloat16
        elif precision == "auto" and use_cuda:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        else:
            dtype = None
        # channels_last is faster for depthwise / dense convolutions on CPU (MobileNet 1.9x, EfficientNet
        # 1.7x, DenseNet 1.3x measured at 48 px) and for tensor cores on GPU; ResNets are indifferent.
        cl = str(channels_last).lower()
        return cls(dev, dtype, True if cl == "auto" else cl == "true")


def grad_scaler(dev: Device) -> "torch.amp.GradScaler":
    """The gradient scaler of a trial on ``dev`` (enabled for fp16 autocast only; a no-op otherwise). Its state
    belongs in the trial's checkpoint, so that a resumed trial continues with the same loss scale."""
    return torch.amp.GradScaler(dev.device.type, enabled=dev.scales_gradients)


class BatchSource(torch.utils.data.Dataset):
    """Batches of (uint8 images, float labels) gathered from a memory-mapped array.

    One item is one batch (rows given by a list of index arrays), so a DataLoader with
    ``batch_size=None`` moves whole batches and its workers do the gathering.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batches: list[np.ndarray]):
        self.images, self.labels, self.batches = images, labels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        rows = self.batches[i]
        order = np.argsort(rows, kind="stable")  # sorted reads are kinder to a memory map
        x = np.empty((len(rows),) + self.images.shape[1:], dtype=np.uint8)
        x[order] = self.images[rows[order]]
        return torch.from_numpy(x), torch.from_numpy(self.labels[rows].astype(np.float32))


def iterate(images: np.ndarray, labels: np.ndarray, rows: np.ndarray, batch_size: int, *,
            num_workers: int = 0, pin_memory: bool = False, drop_last: bool = False) -> Iterator:
    """Yield (uint8 (B, S, S), float (B, L)) batches of ``rows`` in the given order."""
    n = len(rows)
    stop = (n // batch_size) * batch_size if drop_last and n >= batch_size else n
    batches = [rows[i:i + batch_size] for i in range(0, stop, batch_size)]
    source = BatchSource(images, labels, batches)
    if num_workers <= 0:
        for i in range(len(source)):
            yield source[i]
        return
    loader = torch.utils.data.DataLoader(source, batch_size=None, shuffle=False, num_workers=num_workers,
                                         pin_memory=pin_memory, persistent_workers=False, prefetch_factor=4)
    yield from loader


def to_input(x: torch.Tensor, dev: Device) -> torch.Tensor:
    """uint8 (B, S, S) -> normalised float (B, 1, S, S) on the device."""
    x = x.to(dev.device, non_blocking=True).unsqueeze(1).float().div_(255.0).sub_(MEAN).div_(STD)
    if dev.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment(x: torch.Tensor, gen: torch.Generator, *, shift: float = 0.06, contrast: float = 0.15) -> torch.Tensor:
    """Light, label-preserving augmentation on a normalised batch: random shifts (no flips: the heart
    is on the left) and contrast / brightness jitter. Deterministic given ``gen``."""
    b = x.shape[0]
    r = torch.rand((b, 4), generator=gen).to(x.device)
    theta = torch.zeros((b, 2, 3), device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = (r[:, 0] * 2 - 1) * shift * 2
    theta[:, 1, 2] = (r[:, 1] * 2 - 1) * shift * 2
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    scale = 1 + (r[:, 2] * 2 - 1) * contrast
    offset = (r[:, 3] * 2 - 1) * contrast
    return x * scale.view(b, 1, 1, 1) + offset.view(b, 1, 1, 1)


def n_train_batches(n_rows: int, batch_size: int) -> int:
    """How many batches :func:`train_epoch` makes of ``n_rows`` (the last partial one dropped when there are more
    rows than one batch)."""
    return n_rows // batch_size if n_rows > batch_size else 1


def train_epoch(model, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, *, loss_fn: Callable,
                optimizer, lr_factor: Callable[[float], float] | None = None, batch_size: int, dev: Device,
                aug_gen: torch.Generator | None = None, num_workers: int = 0,
                scaler: "torch.amp.GradScaler | None" = None,
                mix: "tuple[np.ndarray, np.ndarray] | None" = None, train_only: "torch.nn.Module | None" = None) -> dict:
    """One pass over ``rows`` (already in training order). Returns loss, images, optimiser steps and seconds.

    ``lr_factor(f)`` scales each parameter group's ``initial_lr`` at fraction ``f`` of the epoch. With fp16
    autocast, ``scaler`` (:func:`grad_scaler`, kept across epochs) scales the loss; one is made for this epoch
    when none is given. ``mix = (partner_rows, lambdas)`` mixes batch i with the same positions of
    ``partner_rows`` (as long as ``rows``): input ``(1 - lam_i) x + lam_i x'``, loss ``(1 - lam_i) L(y) + lam_i
    L(y')``. ``train_only`` (a module of ``model``, e.g. its classifier) puts every other module in eval mode
    (frozen batch-norm statistics) for a stage that trains that module alone.
    """
    model.train()
    if train_only is not None:
        model.eval()
        train_only.train()
    scaler = scaler if scaler is not None else grad_scaler(dev)
    total, seen, steps, t0 = 0.0, 0, 0, time.perf_counter()
    n_batches = max(1, n_train_batches(len(rows), batch_size))
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    pin, drop = dev.device.type == "cuda", len(rows) > batch_size
    batches = iterate(images, labels, rows, batch_size, num_workers=num_workers, pin_memory=pin, drop_last=drop)
    partners = iterate(images, labels, mix[0], batch_size, num_workers=num_workers, pin_memory=pin,
                       drop_last=drop) if mix is not None else None
    for i, (x, y) in enumerate(batches):
        partner = next(partners) if partners is not None else None
        if len(x) < 2:
            continue  # batch norm needs two samples
        if lr_factor is not None:
            f = lr_factor(i / n_batches)
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * f
        inp = to_input(x, dev)
        if aug_gen is not None:
            inp = augment(inp, aug_gen)
        target = y.to(dev.device, non_blocking=True)
        if partner is not None:
            lam = float(mix[1][i])
            other = to_input(partner[0], dev)
            if aug_gen is not None:
                other = augment(other, aug_gen)
            inp = inp * (1 - lam) + other * lam
        with torch.autocast(dev.device.type, dtype=dev.autocast_dtype, enabled=dev.autocast_dtype is not None):
            logits = model(inp)
        loss = loss_fn(logits.float(), target)
        if partner is not None:
            loss = loss * (1 - lam) + loss_fn(logits.float(), partner[1].to(dev.device, non_blocking=True)) * lam
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # unscaled unless fp16
        scaler.step(optimizer)
        scaler.update()
        steps += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} (learning rate too high?)")
        total += value * len(x)
        seen += len(x)
    seconds = time.perf_counter() - t0
    return {"loss": total / max(seen, 1), "images": seen, "steps": steps, "seconds": seconds,
            "images_per_s": seen / seconds if seconds > 0 else float("nan")}


@torch.no_grad()
def predict_logits(model, images: np.ndarray, rows: np.ndarray, *, batch_size: int, dev: Device,
                   num_workers: int = 0) -> np.ndarray:
    """Logits (len(rows), L) in the order of ``rows``; restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    out = []
    dummy = np.zeros((len(images), 1), dtype=np.float32)
    try:
        for x, _ in iterate(images, dummy, rows, batch_size, num_workers=num_workers,
                            pin_memory=dev.device.type == "cuda"):
            with torch.autocast(dev.device.type, dtype=dev.autocast_dtype, enabled=dev.autocast_dtype is not None):
                out.append(model(to_input(x, dev)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def make_optimizer(model, *, name: str, lr: float, weight_decay: float):
    """The grid's optimiser over ``model``'s parameters (or over an iterable of parameters)."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


# ---- stages: which parameters train (timm's generic classifier API, so any backbone works) ----
def classifier(model) -> torch.nn.Module:
    """The model's classifier (timm's ``get_classifier()``); an error naming the model if it has none."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, torch.nn.Module) or not any(True for _ in head.parameters()):
        raise ValueError(f"{type(model).__name__} has no classifier with parameters (timm's get_classifier() gave "
                         f"{type(head).__name__}); a stage that trains or re-initialises the classifier needs one")
    return head


def trainable(model, what: str) -> list:
    """Set ``requires_grad`` for a stage that trains ``what`` ("all" or "classifier"); returns those parameters."""
    head = {id(p) for p in classifier(model).parameters()} if what == "classifier" else None
    out = []
    for p in model.parameters():
        p.requires_grad_(head is None or id(p) in head)
        if p.requires_grad:
            out.append(p)
    return out


def reset_classifier(model, num_classes: int, dev: Device) -> None:
    """Re-initialise the classifier with timm's ``reset_classifier`` (draws from torch's global RNG: seed it first)."""
    model.reset_classifier(num_classes)
    model.to(dev.device)
    if dev.channels_last:
        model.to(memory_format=torch.channels_last)


def classifier_rows(model) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier's weight (L, ...) and bias (L,) or None, as arrays."""
    head = classifier(model)
    weight = getattr(head, "weight", None)
    if weight is None:
        raise ValueError(f"classifier {type(head).__name__} has no weight to rescale")
    bias = getattr(head, "bias", None)
    return weight.detach().float().cpu().numpy(), None if bias is None else bias.detach().float().cpu().numpy()


@torch.no_grad()
def scale_classifier_rows(model, scale: np.ndarray) -> None:
    """Multiply row j of the classifier's weight by ``scale[j]`` (tau-normalisation); the bias is kept."""
    weight = classifier(model).weight
    weight.mul_(torch.as_tensor(scale, dtype=weight.dtype, device=weight.device).view(-1, *[1] * (weight.ndim - 1)))


def cosine_factor(epoch: int, epochs: int, *, warmup: float = 0.1) -> Callable[[float], float]:
    """Learning-rate factor within ``epoch``: linear warm-up over the first ``warmup`` of training,
    then cosine decay to 1% -- a function of progress only, so a resumed trial continues exactly."""

    def factor(frac: float) -> float:
        t = (epoch + frac) / max(epochs, 1)
        if t < warmup:
            return 0.1 + 0.9 * t / warmup
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (1 - warmup)))

    return factor
