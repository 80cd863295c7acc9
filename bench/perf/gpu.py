"""``gpu`` section: runs benchmarks/gpu_check.py where CUDA is available, then renders the newest
``benchmarks/results/gpu-*.json`` (also where CUDA is not: results copied back from a GPU node)."""

from __future__ import annotations

import subprocess
import sys

from bench.perf.common import REPO, Context, Result, Target, fmt, ratio
from bench.perf.cost import GPU_COMMAND, latest_gpu_results

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the GPU check, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    if not torch.cuda.is_available():
        return f"CUDA is not available here (torch {torch.__version__} built for CUDA {torch.version.cuda}, no visible GPU)"
    return None


def run_gpu(ctx: Context) -> Result:
    reason = no_cuda_reason()
    if reason is None:
        cmd = [sys.executable, str(SCRIPT)] + (["--quick"] if ctx.quick else [])
        ctx.say(f"  {' '.join(cmd)}")
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                ctx.say("  " + line.rstrip())
            proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError("benchmarks/gpu_check.py ran past 15 minutes") from None
        if proc.returncode != 0:
            raise RuntimeError(f"benchmarks/gpu_check.py exited with {proc.returncode}")
    found = latest_gpu_results()
    if found is None:
        return Result(skipped=f"{reason}; on a GPU node run `{GPU_COMMAND}` (about 4 minutes), then "
                              "`bench perf --only gpu,cost`", keep_previous=True)
    if reason:
        ctx.say(f"gpu: measurement skipped: {reason}; showing the newest results file instead")
    return render(found, skipped_here=reason)


def render(found, *, skipped_here: str | None = None) -> Result:
    path, doc = found
    res = Result()
    res.stamp = (f"Measured {doc.get('date')} by `{doc.get('command', 'python benchmarks/gpu_check.py').strip()}` on "
                 f"{doc.get('card')} (host {doc.get('host')}, {doc.get('cpus')} CPUs), torch {doc.get('torch')}, CUDA "
                 f"{doc.get('cuda')}, ray {doc.get('ray')}; {doc.get('size')} px, batch {doc.get('batch_size')}, "
                 f"{doc.get('num_workers')} loader workers; from `{path.relative_to(REPO)}`"
                 + ("" if doc.get("complete") else " (**incomplete run**)") + "."
                 + (f" (Rendered on a machine without CUDA: {skipped_here}.)" if skipped_here else ""))
    rows = [["backbone", "engine img/s", "GPU util % (mean / max)", "peak GiB", "plain fp32 img/s", "engine / fp32",
             "plain bf16+CL img/s", "engine / plain bf16+CL", "compiled img/s", "predict img/s",
             "Grad-CAM / ++ maps/s", "errors"]]
    for name, b in (doc.get("backbones") or {}).items():
        e, p32, pbf, comp = (b.get(k) or {} for k in ("engine", "plain_fp32", "plain_bf16_cl", "compiled"))
        ips = e.get("images_per_s", float("nan"))
        r32, rbf = ratio(ips, p32.get("images_per_s", float("nan"))), ratio(ips, pbf.get("images_per_s", float("nan")))
        cams = b.get("cam_maps_per_s") or {}
        rows.append([name, fmt(ips), f"{fmt(e.get('util_mean'))} / {fmt(e.get('util_max'))}", fmt(e.get("peak_mem_gib")),
                     fmt(p32.get("images_per_s")), f"**{fmt(r32)}**", fmt(pbf.get("images_per_s")), f"**{fmt(rbf)}**",
                     fmt(comp.get("images_per_s")), fmt(b.get("eval_images_per_s")),
                     f"{fmt(cams.get('gradcam'))} / {fmt(cams.get('gradcam++'))}",
                     "; ".join(f"{k}: {v}" for k, v in (b.get("errors") or {}).items())[:200]])
        res.ratios[f"{name}.engine_vs_fp32"] = r32
        res.ratios[f"{name}.engine_vs_bf16_cl"] = rbf
        if rbf == rbf:
            res.targets.append(Target(f"{name}: engine / plain bf16+CL loop with data on the GPU", rbf, ">= 0.9",
                                      rbf >= 0.9))
    res.tables.append((f"Training at {doc.get('size')} px, batch {doc.get('batch_size')}. *engine*: `bench.engine.train_epoch` (bf16 autocast, channels_last, "
                       "DataLoader workers + pinned memory, batches gathered from a memory-mapped uint8 cache). *plain "
                       "fp32*: a plain loop with the images already on the GPU as floats. *plain bf16+CL*: the same "
                       "with the engine's precision and memory format, i.e. the card's limit for this model without "
                       "any data path; engine / plain bf16+CL is the data path's efficiency.", rows))
    pack = doc.get("packing") or {}
    runs = pack.get("runs") or []
    base = next((r.get("total_images_per_s") for r in runs if r.get("processes") == 1), None)
    if runs:
        prow = [["processes", "resources.gpu", "total img/s", "vs 1 process", "GPU util % (mean)", "error"]]
        for r in runs:
            k = ratio(r.get("total_images_per_s", float("nan")), base or float("nan"))
            prow.append([str(r.get("processes")), f"{r.get('gpu_fraction', 0):g}", fmt(r.get("total_images_per_s")),
                         f"**{fmt(k)}**", fmt(r.get("util_mean")), (r.get("error") or "")[:160]])
            if r.get("processes") != 1:
                res.ratios[f"packing_{r.get('processes')}_vs_1"] = k
        res.tables.append((f"Packing {pack.get('backbone')} trials on one card (Ray tasks with fractional `num_gpus`, "
                           "each training after a common barrier; total = all images / the union of their windows):",
                           prow))
        best = max((v for k, v in res.ratios.items() if k.startswith("packing_") and v == v), default=None)
        if best is not None:
            res.targets.append(Target(f"packing {pack.get('backbone')}: best total img/s / 1 process", best))
    elif pack.get("error"):
        res.notes.append(f"Packing not measured: {pack['error']}")
    return res
