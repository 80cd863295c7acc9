"""``grid`` section: the demo grid end to end (Ray start, trials, reports), and trials per hour with
one trial at a time on every core vs two concurrent trials on one core each."""

from __future__ import annotations

import time

from bench.perf.common import Context, Result, Target, fmt, ratio


def timed_grid(cfg, out) -> dict:
    """Run a grid on the current (or a new local) Ray and build its reports; seconds of each step."""
    from bench import tuner
    from bench.run import expand, run_grid
    from reports.leaderboard import build_report

    t0 = time.perf_counter()
    tuner.init_ray()
    ray_start = time.perf_counter() - t0
    outcome = run_grid(None, cfg=cfg, out=out, say=lambda s: None)
    if outcome.errors:
        raise RuntimeError(f"grid {cfg.name}: {len(outcome.errors)} trial(s) errored: "
                           f"{sorted(outcome.errors.items())[:2]}")
    t1 = time.perf_counter()
    build_report(out)
    return {"trials": len(expand(cfg)), "ray_start": ray_start, "run": outcome.seconds,
            "report": time.perf_counter() - t1}


def run_grid_section(ctx: Context) -> Result:
    import ray

    work = ctx.section_dir("grid")
    res = Result()
    if ray.is_initialized():
        ray.shutdown()
    if ctx.quick:
        demo = ctx.grid(name="perf-demo-reduced", backbones=["mobilenetv3_small_100"], strategies=["bce", "focal"],
                        train={"epochs": 1})
        what = "reduced demo grid (quick): mobilenetv3_small_100 x {bce, focal} x 3 folds, 1 epoch"
    else:
        demo = ctx.grid(name="perf-demo")
        what = "the demo grid (grids/demo.yaml): 2 backbones x 5 strategies x 3 folds, 3 epochs"
    ctx.say(f"  {what} ...")
    d = timed_grid(demo, work / "demo")
    total = d["ray_start"] + d["run"] + d["report"]
    rows = [["grid", "trials", "Ray start s", "data, trials s", "reports s", "total s", "target"]]
    rows.append([what, str(d["trials"]), fmt(d["ray_start"]), fmt(d["run"]), fmt(d["report"]), f"**{fmt(total)}**",
                 "" if ctx.quick else "< 300 s"])
    res.ratios["demo_seconds_per_trial"] = total / d["trials"]
    if ctx.quick:
        res.targets.append(Target("reduced demo grid wall-clock s (quick; the 5-minute target is for the full one)",
                                  total))
    else:
        res.targets.append(Target("demo grid wall-clock s", total, "< 300", total < 300))
    res.tables.append(("End to end, as `bench run --grid grids/demo.yaml` does it (a fresh local Ray, the cached "
                       "dataset, every trial, then the reports and the HTML page):", rows))

    # 1 vs 2 concurrent trials, the same total threads.
    epochs = 1 if ctx.quick else 2
    strategies = ["bce"] if ctx.quick else ["bce", "focal"]
    conc = [["trials at once", "threads per trial", "trials", "wall s (Ray already up)", "trials per hour"]]
    tph = {}
    cores = max(2, ctx.threads)
    for concurrent in (1, 2):
        cfg = ctx.grid(name="perf-concurrency", backbones=["mobilenetv3_small_100"], strategies=strategies,
                       splits={"folds": 2, "val_fraction": 0.2, "seed": 0}, train={"epochs": epochs},
                       resources={"cpu": cores // concurrent, "max_concurrent": concurrent})
        ctx.say(f"  {concurrent} trial(s) at a time, {cores // concurrent} thread(s) each ...")
        r = timed_grid(cfg, work / f"concurrent-{concurrent}")
        tph[concurrent] = r["trials"] / r["run"] * 3600
        conc.append([str(concurrent), str(cores // concurrent), str(r["trials"]), fmt(r["run"]), fmt(tph[concurrent])])
    ray.shutdown()
    gain = ratio(tph[2], tph[1])
    res.ratios["trials_per_hour_2_vs_1"] = gain
    res.targets.append(Target("trials/hour, 2 concurrent (1 thread each) / 1 at a time (2 threads)", gain))
    res.tables.append((f"Trials per hour: mobilenetv3_small_100 x {{{', '.join(strategies)}}} x 2 folds, {epochs} "
                       f"epoch(s), {cores} cores in all; ratio 2 / 1 = **{gain:.2f}**:", conc))
    return res
