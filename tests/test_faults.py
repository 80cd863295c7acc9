"""Faults on real Ray processes: a node of a two-node local cluster lost while trials run on it.

A killed trial worker and a killed driver are covered in ``test_distributed.py``; here the worker
*node* goes away (its ``ray start`` process group and every process under it: raylet, object store,
trial workers). Finished trials must never be lost or trained again, the trial that was running on
the lost node continues elsewhere (or errors and is resumed by re-running the command), and
re-running ``bench run`` completes the grid.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from _cluster import SHARED, _descendants, kill_tree, one_at_a_time
from test_distributed import EPOCHS, TRIALS, Drivers, collected, results, snapshot, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path_factory):
    """test_distributed.py's cluster (tests/_cluster.py: SharedCluster), started again if a node of it is gone."""
    return SHARED.get(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def drivers(cluster, synth_root, tmp_path):
    d = Drivers(cluster, synth_root, tmp_path)
    yield d
    d.close()


STAGED_GRID = """\
name: staged
dataset: {{kind: synthetic, root: {root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies:
  - name: crt_long
    preset: crt
    stages:
      - {{name: features, until: 0.25}}
      - {{name: classifier, sampler: class_aware, train: classifier, reinit: true}}
train: {{epochs: {epochs}, batch_size: 32, lr: 0.003}}
seeds: [0]
resources: {resources}
localisation: {{enabled: false}}
report: {{bootstrap: 0}}
"""


def test_staged_trial_killed_in_its_second_stage_resumes_in_it(cluster, drivers, tmp_path):
    """A cRT trial (2 epochs of features, then 6 of classifier re-training) whose worker is killed (SIGKILL)
    once a second-stage epoch's checkpoint is on storage continues in the second stage, from that checkpoint:
    it never trains the first stage again, and its outputs record both stages."""
    epochs, out = 8, tmp_path / "run"
    grid = tmp_path / "staged.yaml"
    grid.write_text(STAGED_GRID.format(root=drivers.root, epochs=epochs,
                                       resources=one_at_a_time(max_failures=1)))
    driver = drivers.start(grid, out)
    trials = [f"test_resnet-crt_long-f{f}-s0" for f in (0, 1)]

    def in_second_stage():
        """A trial whose last stored row is a second-stage epoch, not its last, whose checkpoint is on storage."""
        for tid in trials:
            rows = results(out / "tune", tid)
            if rows and rows[-1].get("stage") == "classifier" and not rows[-1].get("done") and \
                    rows[-1]["epoch"] < epochs and (out / "tune" / tid / f"checkpoint_{len(rows) - 1:06d}").is_dir():
                return tid, rows[-1]["epoch"], rows[-1]["pid"]
        return None

    victim, killed_at, pid = wait_for("a trial's checkpoint in its second stage", in_second_stage, driver)
    os.kill(pid, signal.SIGKILL)
    rc = driver.wait(timeout=240)
    if rc != 0:  # its retry was spent elsewhere: re-running the command resumes it
        assert rc == 3, driver.output()[-3000:]
        rc = drivers.run(grid, out).proc.returncode
    assert rc == 0, driver.output()[-3000:]
    assert collected(out) == trials
    rows = results(out / "tune", victim)
    pids = [r["pid"] for r in rows]
    last = len(pids) - pids[::-1].index(pid)
    stopped_at, after = rows[last - 1]["epoch"], rows[last:]  # the killed worker's last row, and the rows after it
    # The worker may have stored one more epoch between the row seen here and the SIGKILL (seen in CI under load:
    # seen at 3, killed after 4). The retry starts at the epoch after its last checkpoint (or repeats that one if Tune
    # had not registered the checkpoint yet): inside the second stage, never back at epoch 1.
    assert killed_at <= stopped_at < epochs and rows[last - 1]["stage"] == "classifier"
    assert after and after[0]["epoch"] in (stopped_at, stopped_at + 1), [(r["epoch"], r["pid"]) for r in rows]
    assert all(r["stage"] == "classifier" for r in after) and after[-1]["epoch"] == epochs
    doc = json.loads((out / "trials" / victim / "metrics.json").read_text())
    assert [h["stage"] for h in doc["history"]] == ["features"] * 2 + ["classifier"] * 6
    assert [(s["name"], s["epochs"], s["train"]) for s in doc["stages"]] == \
        [("features", [1, 2], "all"), ("classifier", [3, 8], "classifier")]


def test_lost_node_keeps_finished_trials_and_a_rerun_completes(cluster, drivers, tmp_path):
    out, grid = tmp_path / "run", drivers.grid("grid")
    worker_node = cluster.procs[1]
    first = drivers.start(grid, out)

    def finished():
        """Trials whose outputs were collected *and* whose every epoch shows in the storage copy of Tune's
        result log (Tune writes result rows to the driver's staging folder and copies them to the storage
        path, ``RUN/tune``, only at its next experiment sync: a collected trial can lag there for a moment)."""
        return [tid for tid in collected(out) if len(results(out / "tune", tid)) >= EPOCHS]

    def running_on_worker_node():
        """A trial still training in a process of the worker node, after some trial finished."""
        done = finished()
        if not done or len(done) == len(TRIALS):
            return None
        on_node = set(_descendants(worker_node.pid))
        for tid in sorted(set(TRIALS) - set(done)):
            rows = results(out / "tune", tid)
            if rows and not rows[-1].get("done") and rows[-1].get("pid") in on_node:
                return tid
        return None

    victim = wait_for("a finished trial and one training on the worker node", running_on_worker_node, first)
    # The whole node at once (SIGKILL, no grace: the victim cannot finish its epoch first): `ray start`
    # process, raylet, object store, its trial workers.
    kill_tree(worker_node, grace=0)
    # The last epoch the storage copy of the result log shows (Tune syncs rows there from the driver's staging
    # folder once the checkpoint reported with them is registered): that epoch or the next was in flight.
    # The driver keeps syncing that copy (it is replaced whole): read it once it shows rows again.
    lost_at = wait_for("the victim's result log on storage", lambda: results(out / "tune", victim), first)[-1]["epoch"]
    done = finished()
    assert victim not in done and 0 < len(done) < len(TRIALS)
    before = {tid: snapshot(out / "trials" / tid) for tid in done}
    # the storage copy is replaced whole, so it can be missing for a moment: read it once it shows rows again
    lines = {tid: len(wait_for(f"{tid}'s result log on storage", lambda tid=tid: results(out / "tune", tid),
                               first)) for tid in done}

    rc = first.wait(timeout=240)
    # Either outcome is documented: Tune retried the lost trial on the node that is left, from its last
    # checkpoint (exit 0, and the retry is announced), or the run ended without it (exit 3, GridIncomplete,
    # naming it). Each is checked for what it promises.
    retried = f"{victim}: attempt failed (worker lost or error); retrying from its last checkpoint"
    assert rc in (0, 3), first.output()[-3000:]
    lost = f"1 of {len(TRIALS)} trials errored; the leaderboard is incomplete"  # the worker node ran one trial
    assert (retried in first.output()) if rc == 0 else (lost in first.output()), first.output()[-3000:]
    again = drivers.run(grid, out)
    assert again.proc.returncode == 0, again.output()[-3000:]
    assert collected(out) == TRIALS
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    for tid in done:  # finished before the node was lost: outputs untouched, never trained again
        assert snapshot(out / "trials" / tid) == before[tid], tid
        assert len(results(out / "tune", tid)) == lines[tid] == EPOCHS, tid
        assert f"{tid}: epoch" not in again.output(), tid
    # The lost trial continued from its last registered checkpoint. Ray Tune logs an epoch's result before it
    # registers the checkpoint reported with it, so a node lost in between repeats that one epoch (with the same
    # seeds, hence the same numbers); no other epoch runs twice, and it never starts over from epoch 1 unless
    # epoch 1 was the one in flight.
    epochs = [r["epoch"] for r in results(out / "tune", victim)]
    assert epochs == sorted(epochs) and sorted(set(epochs)) == list(range(1, EPOCHS + 1)), epochs
    repeated = [e for e in set(epochs) if epochs.count(e) > 1]
    assert repeated in ([], [lost_at], [lost_at + 1]), (epochs, lost_at)
