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


def checkpoint_gone(error: BaseException | None) -> bool:
    return error is not None and "does not exist on storage anymore" in str(error)


def error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    for line in reversed(text):
        line = line.strip()
        if line and not line.startswith(("File ", "^", "Traceback", "~")):
            return line[:400]
    return type(error).__name__
