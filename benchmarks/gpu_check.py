"""GPU path check: our engine against plain PyTorch loops on one GPU, and fractional-GPU packing on Ray.

For each main backbone at 224 px (random uint8 images in a memory-mapped cache, 14 labels):

* ``engine``: ``bench.engine.train_epoch`` as a trial runs it on a GPU (bf16 autocast, channels_last,
  DataLoader with ``--workers`` processes and pinned memory, batches gathered from the memory map);
  training images/s, GPU utilisation (sampled every 0.1 s), peak memory;
* ``plain_fp32``: a plain loop, fp32, default memory format, the images already on the GPU as floats
  (no loader at all): what a straightforward script gets;
* ``plain_bf16_cl``: the same plain loop with bf16 autocast and channels_last: the engine's arithmetic
  without its data path, i.e. what the card allows for this model (engine / this = data-path efficiency);
* ``compiled`` (only for ``--compile NAME``): the engine with ``torch.compile``;
* prediction images/s (``engine.predict_logits``) and Grad-CAM / Grad-CAM++ maps/s (``bench.cam``).

Then packing: 1, 2 and 4 concurrent Ray tasks training mobilenetv3_small_100 with ``num_gpus`` 1, 0.5
and 0.25 (as ``resources.gpu`` does for trials), each timed after a common barrier; total images/s.

Writes ``benchmarks/results/gpu-<card>-<date>.json`` after every step (a killed run keeps what it
measured); ``bench perf --only gpu,cost`` renders it and uses it for the cost model. About 4 minutes on
an H100 (``--quick``: about 2). Every backbone and every packing run is guarded: an error or an
out-of-memory is recorded and the check goes on; ``--budget`` seconds bound the whole run.

Usage::

    python benchmarks/gpu_check.py [--quick] [--backbones resnet18 ...] [--compile resnet50]
        [--batch-size 64] [--workers 6] [--seconds 5] [--budget 280] [--no-packing] [--out-dir DIR]
    python benchmarks/gpu_check.py --device cpu --backbones test_resnet --size 32 --seconds 0.5   # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

MAIN_BACKBONES = ["resnet18", "resnet50", "densenet121", "efficientnet_b0", "mobilenetv3_small_100", "convnext_nano"]
PACKED = "mobilenetv3_small_100"
N_LABELS = 14
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------- utilisation
def gpu_utilisation() -> float | None:
    """Current GPU 0 utilisation in percent (NVML through torch, else nvidia-smi), or None."""
    try:
        return float(torch.cuda.utilization(0))
    except Exception:  # noqa: BLE001 - pynvml missing or unsupported: try nvidia-smi
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip().splitlines()[0])
    except Exception:  # noqa: BLE001 - no nvidia-smi either
        return None


class UtilSampler:
    """Samples GPU utilisation in a background thread while a measurement runs."""

    def __init__(self, enabled: bool, every: float = 0.1):
        self.enabled, self.every, self.values = enabled, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = gpu_utilisation()
            if v is None:
                return
            self.values.append(v)
            self._stop.wait(self.every)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def summary(self) -> dict:
        v = self.values
        return {"util_mean": float(np.mean(v)) if v else None, "util_max": float(np.max(v)) if v else None,
                "util_samples": len(v)}


# ---------------------------------------------------------------------------------------- measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device, reset: bool = False) -> float | None:
    if device.type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def make_cache(folder: Path, n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Path, Path]:
    """Random uint8 images in a .npy opened memory-mapped (like the image cache) and random labels."""
    from bench.perf import random_memmap

    path = folder / f"images-{size}.npy"
    images = random_memmap(path, n, size, seed)
    labels = (np.random.default_rng(seed + 1).random((n, N_LABELS)) < 0.1).astype(np.float32)
    lpath = folder / "labels.npy"
    np.save(lpath, labels)
    return images, labels, path, lpath


def new_model(name: str, dev, *, channels_last: bool):
    import backbones

    model = backbones.create_model(name, N_LABELS).to(dev.device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def engine_epoch(net, optimizer, images, labels, n_batches: int, args, dev, rng) -> dict:
    from bench import engine

    rows = rng.integers(0, len(images), n_batches * args.batch_size)
    return engine.train_epoch(net, images, labels, rows, loss_fn=torch.nn.BCEWithLogitsLoss(), optimizer=optimizer,
                              batch_size=args.batch_size, dev=dev, num_workers=args.workers)


def measure_engine(name: str, images, labels, args, *, compile_model: bool = False) -> dict:
    """Training images/s of the engine: a warm-up epoch, a probe, then an epoch of about ``args.seconds``."""
    from bench import engine

    dev = engine.Device.resolve(gpu=1 if args.device == "cuda" else 0)
    model = new_model(name, dev, channels_last=dev.channels_last)
    net = torch.compile(model) if compile_model else model
    opt = engine.make_optimizer(model, name="adamw", lr=1e-4, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    engine_epoch(net, opt, images, labels, 3, args, dev, rng)
    warm = time.perf_counter() - t0
    probe = engine_epoch(net, opt, images, labels, 8, args, dev, rng)["images_per_s"]
    n_batches = int(min(max(10, probe * args.seconds / args.batch_size), 5000))
    peak_memory(dev.device, reset=True)
    with UtilSampler(dev.device.type == "cuda") as util:
        s = engine_epoch(net, opt, images, labels, n_batches, args, dev, rng)
    out = {"images_per_s": s["images_per_s"], "images": s["images"], "seconds": s["seconds"],
           "warmup_seconds": warm, "peak_mem_gib": peak_memory(dev.device), **util.summary(),
           "precision": str(dev.autocast_dtype), "channels_last": dev.channels_last, "workers": args.workers}
    del net, model, opt
    return out


def measure_plain(name: str, images, labels, args, *, bf16: bool, channels_last: bool) -> dict:
    """A plain loop on images already on the device as normalised floats (no loader), time-bounded."""
    import torch.nn.functional as F

    from bench import engine

    device = torch.device(args.device)
    n = min(len(images), 1024)
    x = torch.from_numpy(np.array(images[:n])).to(device).unsqueeze(1).float().div_(255).sub_(0.449).div_(0.226)
    y = torch.from_numpy(labels[:n]).to(device)
    dev = engine.Device(device, None, channels_last)
    model = new_model(name, dev, channels_last=channels_last)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)  # indices drawn on the device: no host sync per step
    use_bf16 = bf16 and device.type == "cuda"

    def step():
        idx = torch.randint(0, n, (args.batch_size,), generator=gen, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(x[idx])
        loss = F.binary_cross_entropy_with_logits(out.float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    peak_memory(device, reset=True)
    steps, t0 = 0, time.perf_counter()
    with UtilSampler(device.type == "cuda") as util:
        while True:
            step()
            steps += 1
            if steps % 5 == 0:
                sync(device)
                if time.perf_counter() - t0 >= args.seconds:
                    break
    sync(device)
    seconds = time.perf_counter() - t0
    out = {"images_per_s": steps * args.batch_size / seconds, "images": steps * args.batch_size, "seconds": seconds,
           "peak_mem_gib": peak_memory(device), **util.summary(), "precision": "bf16" if use_bf16 else "fp32",
           "channels_last": channels_last}
    del model, opt, x, y
    return out


def measure_eval_cam(name: str, images, args) -> dict:
    """Prediction images/s (``engine.predict_logits``) and CAM maps/s per method (batches of 32 images
    of one finding, as a trial's localisation does)."""
    from bench import engine
    from bench.cam import compute_cams

    dev = engine.Device.resolve(gpu=1 if args.device == "cuda" else 0)
    model = new_model(name, dev, channels_last=dev.channels_last).eval()
    n = len(images) if not args.quick else min(len(images), 2048)
    engine.predict_logits(model, images, np.arange(256), batch_size=256, dev=dev)
    sync(dev.device)
    t0 = time.perf_counter()
    # As a trial predicts: eval_batch_size 256, no loader workers (run_trial passes none).
    engine.predict_logits(model, images, np.arange(n), batch_size=256, dev=dev)
    sync(dev.device)
    out = {"eval_images_per_s": n / (time.perf_counter() - t0), "cam_maps_per_s": {}}
    x = engine.to_input(torch.from_numpy(np.array(images[:32])), dev)
    targets = [(i, c) for c in (0, 1) for i in range(32)]
    for method in ("gradcam", "gradcam++"):
        compute_cams(model, name, x[:2], targets[:2], method=method, device=dev.device)
        sync(dev.device)
        t0 = time.perf_counter()
        compute_cams(model, name, x, targets, method=method, batch_size=32, device=dev.device)
        sync(dev.device)
        out["cam_maps_per_s"][method] = len(targets) / (time.perf_counter() - t0)
    del model
    return out


# ---------------------------------------------------------------------------------------- packing
def _pack_worker(name: str, cache: str, labels_path: str, fraction: float, cpus: int, seconds: float, barrier: str,
                 k: int, index: int, batch_size: int, device: str) -> dict:
    """One packed process: warm up, wait for the others, probe, then train for about ``seconds``."""
    from types import SimpleNamespace

    from bench import engine

    torch.set_num_threads(max(1, cpus // 2))
    images, labels = np.load(cache, mmap_mode="r"), np.load(labels_path)
    dev = engine.Device.resolve(gpu=fraction if device == "cuda" else 0)
    model = new_model(name, dev, channels_last=dev.channels_last)
    opt = engine.make_optimizer(model, name="adamw", lr=1e-4, weight_decay=1e-4)
    args = SimpleNamespace(batch_size=batch_size, workers=max(1, cpus - 1))
    rng = np.random.default_rng(index)
    engine_epoch(model, opt, images, labels, 3, args, dev, rng)
    Path(barrier, f"ready-{index}").touch()
    deadline = time.time() + 180
    while len(list(Path(barrier).glob("ready-*"))) < k and time.time() < deadline:
        time.sleep(0.05)
    probe = engine_epoch(model, opt, images, labels, 8, args, dev, rng)["images_per_s"]
    n_batches = int(min(max(10, probe * seconds / batch_size), 5000))
    start = time.time()
    s = engine_epoch(model, opt, images, labels, n_batches, args, dev, rng)
    return {"images": s["images"], "seconds": s["seconds"], "images_per_s": s["images_per_s"], "start": start,
            "end": time.time(), "device": str(dev.device)}


def measure_packing(cache: Path, labels_path: Path, args, say) -> dict:
    """Total images/s of 1, 2 and 4 concurrent Ray tasks with num_gpus 1, 0.5, 0.25."""
    import ray

    from bench import tuner

    cpus = os.cpu_count() or 4
    tuner.ray_env()
    # A private instance even where RAY_ADDRESS names a cluster: the check measures this card only.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=cpus, num_gpus=1 if args.device == "cuda" else 0, include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)
    runs = []
    try:
        for k in args.packing:
            fraction = 1.0 / k
            per_cpu = max(1, (cpus - 1) // k)
            remote = ray.remote(num_cpus=per_cpu, num_gpus=fraction if args.device == "cuda" else 0)(_pack_worker)
            with tempfile.TemporaryDirectory(prefix="gpu-check-barrier-") as barrier, \
                    UtilSampler(args.device == "cuda", every=0.2) as util:
                refs = [remote.remote(PACKED, str(cache), str(labels_path), fraction, per_cpu, args.packing_seconds,
                                      barrier, k, i, args.batch_size, args.device) for i in range(k)]
                try:
                    parts = ray.get(refs, timeout=args.packing_seconds * k + 240)
                except Exception as exc:  # noqa: BLE001 - timeout or a failed task: recorded, next k
                    for r in refs:
                        ray.cancel(r, force=True)
                    runs.append({"processes": k, "gpu_fraction": fraction, "error": f"{type(exc).__name__}: {exc}"[:500]})
                    say(f"  packing {k} x {fraction:g}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
                    continue
            window = max(p["end"] for p in parts) - min(p["start"] for p in parts)
            total = sum(p["images"] for p in parts) / window
            runs.append({"processes": k, "gpu_fraction": fraction, "cpus_per_process": per_cpu,
                         "total_images_per_s": total, "sum_images_per_s": sum(p["images_per_s"] for p in parts),
                         "per_process": parts, **util.summary()})
            each = ", ".join(f"{p['images_per_s']:,.0f}" for p in parts)
            say(f"  packing {k} x gpu {fraction:g}: {total:,.0f} img/s in all ({each} per process)")
    finally:
        ray.shutdown()
    return {"backbone": PACKED, "runs": runs}


# ---------------------------------------------------------------------------------------- main
def card_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu-{platform.machine()}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", nargs="+", default=MAIN_BACKBONES)
    ap.add_argument("--compile", nargs="*", default=[], metavar="BACKBONE", help="also time the engine compiled")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(6, CPUs - 2))")
    ap.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement (default 5; quick 2)")
    ap.add_argument("--packing", nargs="*", type=int, default=[1, 2, 4], help="concurrent processes to try")
    ap.add_argument("--packing-seconds", type=float, default=None, help="default 8; quick 4")
    ap.add_argument("--no-packing", action="store_true")
    ap.add_argument("--budget", type=float, default=280, help="seconds for the whole check (later steps are skipped)")
    ap.add_argument("--images", type=int, default=4096, help="images in the synthetic memory-mapped cache")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}); nothing measured", flush=True)
        return 2
    cpus = os.cpu_count() or 4
    args.workers = max(0, min(6, cpus - 2)) if args.workers is None else args.workers
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.packing_seconds = args.packing_seconds or (4.0 if args.quick else 8.0)
    t_start = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - t_start:5.0f}s] {text}", flush=True)

    import ray

    card, now = card_name(), dt.datetime.now()
    out_file = args.out_dir / f"gpu-{slug(card)}-{now:%Y-%m-%d}.json"
    doc = {"schema": 1, "card": card, "date": now.isoformat(timespec="seconds"), "host": platform.node(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "ray": ray.__version__, "cpus": cpus,
           "size": args.size, "batch_size": args.batch_size, "num_workers": args.workers, "device": args.device,
           "seconds_per_measurement": args.seconds, "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
           "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "backbones": {}, "packing": None, "complete": False}

    def save() -> None:
        doc["wall_s"] = round(time.perf_counter() - t_start, 1)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, out_file)

    say(f"{card}, torch {torch.__version__} (CUDA {torch.version.cuda}), {cpus} CPUs, {args.workers} loader workers, "
        f"{args.size} px, batch {args.batch_size}; writing {out_file}")
    # Last resort against a hung CUDA call or Ray task: keep what was measured and exit.
    def watchdog() -> None:
        doc["watchdog"] = f"stopped after {args.budget + 150:.0f}s"
        save()
        print(f"gpu_check: watchdog: still running after {args.budget + 150:.0f}s; partial results in {out_file}",
              flush=True)
        os._exit(124)

    timer = threading.Timer(args.budget + 150, watchdog)
    timer.daemon = True
    timer.start()
    reserve = 0 if args.no_packing else 25 * len(args.packing) + 10
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        images, labels, cache, labels_path = make_cache(Path(tmp), args.images, args.size)
        for name in args.backbones:
            row: dict = {"errors": {}}
            doc["backbones"][name] = row
            steps = [("engine", lambda: measure_engine(name, images, labels, args)),
                     ("plain_fp32", lambda: measure_plain(name, images, labels, args, bf16=False, channels_last=False)),
                     ("plain_bf16_cl", lambda: measure_plain(name, images, labels, args, bf16=True, channels_last=True)),
                     ("eval_cam", lambda: measure_eval_cam(name, images, args))]
            if name in args.compile:
                steps.append(("compiled", lambda: measure_engine(name, images, labels, args, compile_model=True)))
            for part, fn in steps:
                if time.perf_counter() - t_start > args.budget - reserve:
                    row["errors"][part] = "skipped: time budget spent"
                    continue
                try:
                    result = fn()
                    if part == "eval_cam":
                        row.update(result)
                    else:
                        row[part] = result
                except Exception as exc:  # noqa: BLE001 - OOM or a model that fails: recorded, go on
                    row["errors"][part] = f"{type(exc).__name__}: {exc}"[:500]
                finally:
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
                save()
            e, p32, pbf = row.get("engine", {}), row.get("plain_fp32", {}), row.get("plain_bf16_cl", {})
            say(f"{name}: engine {e.get('images_per_s', float('nan')):,.0f} img/s (util {e.get('util_mean')}%, "
                f"{e.get('peak_mem_gib') or 0:.1f} GiB), plain fp32 {p32.get('images_per_s', float('nan')):,.0f}, "
                f"plain bf16+CL {pbf.get('images_per_s', float('nan')):,.0f}, eval "
                f"{row.get('eval_images_per_s', float('nan')):,.0f} img/s" +
                (f"; errors: {row['errors']}" if row["errors"] else ""))
        if not args.no_packing:
            if time.perf_counter() - t_start > args.budget - 20:
                doc["packing"] = {"backbone": PACKED, "runs": [], "error": "skipped: time budget spent"}
            else:
                try:
                    doc["packing"] = measure_packing(cache, labels_path, args, say)
                except Exception as exc:  # noqa: BLE001 - Ray could not start: recorded
                    doc["packing"] = {"backbone": PACKED, "runs": [], "error": f"{type(exc).__name__}: {exc}"[:500]}
                    say(f"packing FAILED: {doc['packing']['error']}")
        del images
    timer.cancel()
    doc["complete"] = True
    save()
    say(f"done in {time.perf_counter() - t_start:.0f}s: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
