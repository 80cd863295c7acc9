"""The grid generator ``bench run`` hands Ray Tune, and the callback that tells it Tune's trial states.

Tune's own concurrency limit (``TuneConfig(max_concurrent_trials)``) has its generator create a grid's trials
lazily, as running ones end, counting them in a set saved with the generator's state. Ray 2.60 uploads the
experiment folder to storage while the next save rewrites it, so storage can hold a generator state older or newer
than the trial states beside it. Restored from such a pair, the set names a trial that never ends again and Tune
waits for a trial slot forever (the generator may also hand out again a trial the experiment already has, or skip
one). :class:`RestoreSafeGrid` counts instead the trials Tune reports unfinished at the start of each of its steps
(:class:`TrialCensus`), and skips any grid point the experiment already holds; a point it skipped wrongly, never
created, is run by ``bench run`` as a new experiment afterwards (``bench.run``).

Both classes live at module level so that the ``tuner.pkl`` of an experiment refers to them by name: a restored
experiment runs this code, not a copy of the code of the ``bench run`` that saved it. Importing this module imports
Ray Tune; ``bench.tuner`` imports it only when it builds a tuner.

Importing it also keeps Ray Tune from restoring a decision about a trial that a driver had put off
(:func:`forget_put_off_decisions`): it runs wherever a restored experiment runs, on the head node under Ray Client
too, since ``tuner.pkl`` imports this module there.
"""

from __future__ import annotations

from ray import tune
from ray.tune.search import BasicVariantGenerator

from bench.trial_spec import grid_point


class RestoreSafeGrid(BasicVariantGenerator):
    """Ray Tune's grid generator, limited to ``limit`` unfinished trials (0: no limit), as its :class:`TrialCensus`
    counts them; it never hands Tune a trial without a grid point (an empty config, from a restored state out of
    step with its experiment) or one whose grid point the experiment already holds."""

    def __init__(self, limit: int):
        super().__init__(max_concurrent=0)  # the limit is kept below, from Tune's own trial states
        self.limit, self.unfinished, self.known = int(limit), set(), set()

    def next_trial(self):
        while not self.limit or len(self.unfinished) < self.limit:
            trial = super().next_trial()
            if trial is None:
                return None
            tid = grid_point(trial)
            if tid is not None and tid not in self.known:
                self.known.add(tid)
                self.unfinished.add(trial.trial_id)
                return trial
        return None

    def on_trial_complete(self, trial_id, result=None, error=False):
        super().on_trial_complete(trial_id, result=result, error=error)
        self.unfinished.discard(trial_id)


class TrialCensus(tune.Callback):
    """Tells its generator which trials Tune has and which of them are unfinished, before Tune asks it for more."""

    def __init__(self, grid: RestoreSafeGrid):
        self.grid, self.count = grid, -1

    def on_step_begin(self, iteration, trials, **info):
        self.grid.unfinished = {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
        if len(trials) != self.count:
            self.count, self.grid.known = len(trials), {grid_point(t) for t in trials} - {None}


def restore_safe_grid(max_concurrent: int) -> tuple[RestoreSafeGrid, TrialCensus]:
    """``(search_alg, callback)`` for a tuner that runs at most ``max_concurrent`` trials at once (0: no limit).
    The callback goes last in the run config's callbacks (``bench.tuner`` finds it there after a restore)."""
    grid = RestoreSafeGrid(max_concurrent)
    return grid, TrialCensus(grid)


def forget_put_off_decisions() -> None:
    """Make Ray Tune's restore drop the trial decisions the saved driver had put off.

    Ray Tune 2.60 puts off a decision about a trial whose checkpoint is being saved until the save ends (a STOP when
    its worker dies meanwhile: the trial errors), and saves those decisions with the experiment
    (``TuneController._cached_trial_decisions`` and ``_queued_trial_decisions``, in ``runner_data``). The save never
    ends, so a restored experiment carried the STOP, and the resumed trial was stopped, as if finished, at its first
    checkpoint: "done" after one epoch, without its results (``tests/test_distributed.py``'s killed worker, killed
    during a save, once in a full test run). No save is under way in a restored experiment, so every such decision is
    stale there. A no-op on a Ray whose restore has no ``__setstate__``."""
    from ray.tune.execution.tune_controller import TuneController

    restore = getattr(TuneController, "__setstate__", None)
    if restore is None or getattr(restore, "forgets_put_off_decisions", False):
        return

    put_off = ("_cached_trial_decisions", "_queued_trial_decisions")

    def __setstate__(self, state: dict) -> None:
        restore(self, {**state, **{k: {} for k in put_off if k in state}})

    __setstate__.forgets_put_off_decisions = True
    TuneController.__setstate__ = __setstate__


forget_put_off_decisions()
