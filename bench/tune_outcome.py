"""What a finished Ray Tune run left for ``bench run``: errors, outputs to collect, trials it stopped.

:func:`settle` reads a ``ResultGrid``'s results (a list) once Tune has returned; it runs on the driver's machine,
also under Ray Client, where the progress callback (:func:`bench.tuner.make_callback`) ran on the head node
and could not copy outputs here.
"""

from __future__ import annotations

from bench.runfolder import collect_trial, has_outputs
from bench.trial_spec import spec_of


def settle(results: list, folder, errors: dict[str, str]) -> list[str]:
    """Record a Tune run's errors in ``errors`` and collect into ``folder`` (a run folder) the finished trials'
    outputs its callback did not; the trials it stopped (Ctrl-C)."""
    stopped = []
    for result in results:
        if not result.config:  # never started: Ray Tune was stopped (Ctrl-C) before it ran this trial
            stopped.append("(not started)")
            continue
        tid = spec_of(result.config).id
        if result.error is not None:
            if not folder.trial(tid).is_finished():  # else: finished before
                errors[tid] = error_line(result.error)
            continue
        if not folder.trial(tid).is_finished():
            if has_outputs(result.checkpoint):
                collect_trial(folder.path, tid, result.checkpoint)
            else:  # neither finished nor errored: Ray Tune stopped it (Ctrl-C); its checkpoint is kept
                stopped.append(tid)
    return stopped


def settle_run(t, results: list, todo: list, folder, errors: dict[str, str], interrupted: bool):
    """:func:`settle` for the results of ``t`` (a tuner that has run, ``interrupted`` when a Ctrl-C reached it) over
    ``todo`` (trial specs): ``(stopped, never started, ended early)``.

    - never started: trials of ``todo`` no result holds and without outputs in the run folder;
    - ended early: trials Ray Tune ended before their last epoch when no Ctrl-C did (no Ctrl-C caught, the grid
      generator finished). A stop shows one of the two; a trial ended otherwise, which the same command would find
      ended again, never resumed, runs again instead. Seen once in a full test run: a resumed trial reported its
      first epoch after the restore and Tune ended it, on a STOP the saved driver had put off (which
      :func:`bench.tune_grid.forget_put_off_decisions` now drops); this catches any other such end;
    - stopped: the trials a Ctrl-C stopped. When Tune was stopped between two trials (:func:`bench.tuner.ended_early`)
      no trial is left unfinished to show it: the ones it never started count as stopped."""
    from bench import tuner

    stopped = settle(results, folder, errors)
    seen = {spec_of(r.config).id for r in results if r.config}
    unseen = [s for s in todo if s.id not in seen and not folder.trial(s.id).is_finished()]
    early = tuner.ended_early(t)
    ended_ids = set() if interrupted or early else set(stopped) & {s.id for s in todo}
    ended = [s for s in todo if s.id in ended_ids]
    stopped = [tid for tid in stopped if tid not in ended_ids]
    if unseen and not stopped and early:
        stopped = [s.id for s in unseen]
    return stopped, unseen, ended


def rerun_line(unseen: list, ended: list, name: str) -> str:
    """What ``bench run`` says when it runs the trials :func:`settle_run` found never started or ended early as the
    new experiment ``name``."""
    why = [f"Ray Tune ended without starting {len(unseen)} trial(s)"] if unseen else []
    if ended:
        who = "it ended" if unseen else "Ray Tune ended"
        why.append(f"{who} {len(ended)} trial(s) before their last epoch without a Ctrl-C "
                   f"({', '.join(s.id for s in ended)}; they start over, with the same numbers: every draw is seeded)")
    return f"{' and '.join(why)}: running them as a new experiment, {name}"


ENDED_TWICE = ("Ray Tune ended the trial before its last epoch without a Ctrl-C, twice (the second time as a new "
               "experiment); its result log is in RUN/tune")


def checkpoint_gone(error: BaseException | None) -> bool:
    return error is not None and "does not exist on storage anymore" in str(error)


def error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    for line in reversed(text):
        line = line.strip()
        if line and not line.startswith(("File ", "^", "Traceback", "~")):
            return line[:400]
    return type(error).__name__
