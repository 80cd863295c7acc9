"""Ray Tune restores that storage can hand back: an experiment whose saved generator state is out of step with its
saved trial states (Ray 2.60 uploads the experiment folder while the next save rewrites it).

With Tune's own ``max_concurrent_trials`` such a restore waited for a trial slot forever: its generator counted as
running a trial that had ended (seen on the test cluster: ``bench run`` hung after restoring from S3). The bench's
generator (``bench.tuner.restore_safe_grid``) counts the trials Tune reports unfinished instead and skips grid points
the experiment already holds; trials it never creates run as a new experiment (``bench.run``). The trainable here is
a stand-in that trains nothing, so each test costs Tune's driver and one light worker, not torch's import.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray import cloudpickle

from bench import tuner
from bench.config import ResourcesConfig
from bench.trial_spec import TrialSpec

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module
TRIALS = [TrialSpec(id=f"standin-{i}", backbone="standin", strategy={"name": "bce"}, fold=i, seed=0) for i in range(4)]


def standin(config: dict, data=None, finished=None) -> None:
    """Three reports, the last ``done``; appends its id and the time to ``data['log']`` when it starts, and again,
    marked ``end``, before its last report. It first waits (up to 20 s), if it is one of ``data['meet']``, until the
    others of them have started, and with ``data['hold']``, unless it is ``data['first']``, 20 s (Tune stops it
    before)."""
    from ray import tune

    tid = config["trial"]["id"]
    with open(data["log"], "a") as f:
        f.write(f"{tid} {time.time()}\n")
    deadline = time.monotonic() + 20
    meet = set(data["meet"]) if tid in data["meet"] else set()
    while not meet <= set(started(Path(data["log"]))) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the others of data["meet"] have started too (or 20 s): they overlap, whatever the load
    while data.get("hold") and tid != data["first"] and time.monotonic() < deadline:
        time.sleep(0.05)  # every trial but the first: running, not finishing, when the driver is interrupted
    for epoch in range(1, 4):
        if epoch == 3:  # (Tune ends the trial at its "done" report)
            with open(data["log"], "a") as f:
                f.write(f"{tid} {time.time()} end\n")
        tune.report({"epoch": epoch, "done": epoch == 3, "macro_auc": 0.5, "macro_f1": 0.25})


def started(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines() if not line.endswith(" end")]


def fit(tmp_path: Path, *, max_concurrent: int, cpu: float = 1.0, restore: bool = False, callbacks=(),
        meet: tuple = (), hold: bool = False):
    cfg = SimpleNamespace(resources=ResourcesConfig(cpu=cpu, max_concurrent=max_concurrent))
    data = {"log": str(tmp_path / "started.log"), "meet": list(meet), "hold": hold, "first": TRIALS[0].id}
    t = tuner.build_tuner(data, TRIALS, cfg=cfg, storage_path=str(tmp_path / "storage"), name="exp",
                          callbacks=list(callbacks), restore=restore, trainable=standin)
    return list(t.fit())


def generator_state(tmp_path: Path) -> Path:
    """The generator state a restore reads: the newest session's (Tune picks the greatest file name)."""
    return max((tmp_path / "storage" / "exp").glob("basic-variant-state-*.json"))


@pytest.mark.slow
@pytest.mark.timeout(180)  # Tune's own limit waited here (600 s a round) for a slot its generator never freed
@pytest.mark.parametrize("when", ["first trial ended", "second trial started"])
def test_a_generator_state_older_than_the_trial_states_neither_hangs_nor_runs_a_trial_twice(ray_session, tmp_path,
                                                                                            when):
    """The older state is saved when the driver is interrupted: once the first trial has ended (Tune's own
    generator then created the last three trials again), or once the second has started (it counted the second as
    running forever)."""
    from ray import tune

    interrupted = tmp_path / "interrupted"

    class Interrupt(tune.Callback):  # as by Ctrl-C: Tune saves its state and returns
        def interrupt(self):
            if not interrupted.exists():
                interrupted.touch()
                os.kill(os.getpid(), signal.SIGINT)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if when == "first trial ended":
                self.interrupt()

        def on_trial_start(self, iteration, trials, trial, **info):
            if when == "second trial started" and trial.config["trial"]["id"] == TRIALS[1].id:
                self.interrupt()

    # 1. Interrupted: one trial finished, the second created; the generator state saved then is the older one.
    first = fit(tmp_path, max_concurrent=1, callbacks=[Interrupt()], hold=True)
    assert len([r for r in first if r.metrics.get("done")]) == 1, [r.metrics for r in first]
    older = generator_state(tmp_path).read_bytes()

    # 2. Restored and run to the end: four trials finished, the generator state says so.
    second = fit(tmp_path, max_concurrent=1, restore=True)
    assert sorted(r.config["trial"]["id"] for r in second if r.metrics.get("done")) == [t.id for t in TRIALS]
    runs = started(tmp_path / "started.log")

    # 3. Storage now holds the older generator state beside the newer trial states, as an upload that overlapped
    # a save leaves it. Restoring has nothing left to run: Tune returns at once and trains nothing again.
    generator_state(tmp_path).write_bytes(older)
    third = fit(tmp_path, max_concurrent=1, restore=True)  # (a hang is failed by the timeout above)
    assert sorted(r.config["trial"]["id"] for r in third if r.metrics.get("done")) == [t.id for t in TRIALS]
    assert started(tmp_path / "started.log") == runs, "a finished trial was run again"
    assert set(runs) == {t.id for t in TRIALS}


@pytest.mark.slow
def test_the_grid_never_runs_more_trials_at_once_than_max_concurrent(ray_session, tmp_path):
    # Room for four at once on the session's one CPU; the first two trials wait (up to 20 s) for each other.
    fit(tmp_path, max_concurrent=2, cpu=0.25, meet=(TRIALS[0].id, TRIALS[1].id))
    events = sorted((float(t), 1 if len(rest) == 0 else -1) for _, t, *rest in
                    (line.split() for line in (tmp_path / "started.log").read_text().splitlines()))
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert len(events) == 2 * len(TRIALS) and most == 2, events


def test_trials_a_restored_experiment_never_created_run_as_a_new_experiment(synth_root, tmp_path, monkeypatch):
    """A generator state newer than the trial states has handed out grid points the restored experiment does not
    hold: Tune ends without them. ``bench run`` then runs exactly those as a new experiment, which run.json names
    (the one a later resume restores). Driver logic only: Tune is a stand-in here."""
    from bench.config import parse_grid, resolve_paths
    from bench.run import expand, run_grid

    cfg = resolve_paths(parse_grid({
        "dataset": {"kind": "synthetic", "root": str(synth_root), "n": 200, "size": 64, "image_size": 32},
        "splits": {"folds": 2, "val_fraction": 0.25}, "backbones": ["test_resnet"], "strategies": ["bce", "focal"],
        "train": {"epochs": 1, "batch_size": 32}, "resources": {"max_concurrent": 1},
    }))
    trials = expand(cfg)

    def finished(spec):  # a Tune result whose final checkpoint holds the trial's outputs
        ckpt = tmp_path / "checkpoints" / spec.id
        (ckpt / "outputs").mkdir(parents=True)
        (ckpt / "outputs" / "metrics.json").write_text(json.dumps({"trial": spec.id, "summary": {"macro_auc": 0.5}}))
        return SimpleNamespace(config={"trial": spec.to_dict()}, error=None, metrics={"done": True},
                               checkpoint=SimpleNamespace(as_directory=lambda: contextlib.nullcontext(str(ckpt))))

    calls = []

    def build_tuner(data, todo, **kw):
        calls.append((kw.get("restore", False), kw["name"], [t.id for t in todo]))
        ran = trials[:2] if kw.get("restore") else todo  # the restored experiment holds the first two only
        return SimpleNamespace(fit=lambda: [finished(t) for t in ran])

    monkeypatch.setattr(tuner, "init_ray", lambda *a, **kw: None)
    monkeypatch.setattr(tuner, "can_restore", lambda *a, **kw: True)  # e.g. a lost run folder, the experiment kept
    monkeypatch.setattr(tuner, "build_tuner", build_tuner)
    lines = []
    outcome = run_grid(None, cfg=cfg, out=tmp_path / "run", say=lines.append)

    (restore, first, todo), (again, second, rest) = calls
    assert restore and todo == [t.id for t in trials]
    assert not again and second.startswith(f"{first}-") and rest == [t.id for t in trials[2:]]
    assert f"Ray Tune ended without starting 2 trial(s): running them as a new experiment, {second}" in lines
    assert json.loads((tmp_path / "run" / "run.json").read_text())["experiment"] == second
    assert outcome.completed == sorted(t.id for t in trials) and not outcome.errors


def test_the_census_counts_unfinished_trials_and_knows_restored_ones_before_tune_resolves_their_config():
    """What the generator is told at each step: Tune's unfinished trials (its limit), and the grid points the
    experiment holds, also a restored trial's whose config Tune has not resolved yet (empty until it starts)."""
    grid, census = tuner.restore_safe_grid(2)

    def trial(tid, status, *, resolved=True):
        point = {"trial": {"id": tid}}
        return SimpleNamespace(trial_id=f"t-{tid}", status=status, config=point if resolved else {},
                               evaluated_params=point)

    census.on_step_begin(0, [trial("a", "TERMINATED"), trial("b", "RUNNING"), trial("c", "PENDING", resolved=False),
                             trial("d", "ERROR"), trial("e", "PAUSED")])
    assert grid.unfinished == {"t-b", "t-c", "t-e"} and grid.known == {"a", "b", "c", "d", "e"}
    assert grid.next_trial() is None  # three unfinished, the limit is two: nothing new, whatever the saved state


def test_the_grid_skips_trials_without_a_grid_point_and_known_ones(monkeypatch):
    """A restored generator out of step with its experiment can create a trial with an empty config (its grid point
    lost, seen in CI): never handed to Tune (bench run runs what Tune never started as a new experiment); nor is a
    grid point the experiment already holds. Such a trial's name is ``unresolved-<Tune's id>``, not a KeyError."""
    grid, _ = tuner.restore_safe_grid(0)
    empty = SimpleNamespace(trial_id="t-0", config={}, evaluated_params={})
    known = SimpleNamespace(trial_id="t-1", config={"trial": {"id": "a"}}, evaluated_params={})
    new = SimpleNamespace(trial_id="t-2", config={"trial": {"id": "b"}}, evaluated_params={})
    made = iter([empty, known, new, None])
    monkeypatch.setattr(type(grid).__mro__[1], "next_trial", lambda self: next(made))
    grid.known = {"a"}
    assert grid.next_trial() is new and grid.known == {"a", "b"} and grid.unfinished == {"t-2"}
    assert grid.next_trial() is None
    assert tuner.trial_name(empty) == "unresolved-t-0" and tuner.trial_name(new) == "b"
