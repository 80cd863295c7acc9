"""How ``bench run`` and ``bench tune`` run a Ray Tune experiment: :func:`fit`, and what it changes in Ray Tune.

Ray Tune 2.60 installs its own SIGINT handler when a run starts: a Ctrl-C then ends Tune's loop, saves the
experiment and returns normally, and Tune puts the previous handler back. It does so only when the handler fires:
after a run that ended on its own, Tune's handler stays installed, bound to a run that is over, and the next Ctrl-C
is swallowed (between two runs of one ``bench run``, the restart of errored trials for example, or while it writes
the report; and ``bench tune`` went on to the next fold's search). :func:`fit` puts the previous handlers back after
every run, and tells the caller whether a Ctrl-C reached Tune's handler, so that the caller stops too.

A restore that Ray Tune cannot read (a driver killed while Tune rewrote its saved search state leaves that file
empty) makes Tune log "Failed to restore the run state" and run the experiment without the trials saved in it; bench
mutes Tune's logs, so :func:`fit` repeats that as one warning of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

# Tune (tune.run's _setup_signal_catching) installs a handler for SIGUSR1 too, and never puts the old one back.
_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s is not None)


def fit(tuner) -> tuple[list, bool]:
    """``tuner.fit()``'s results (a list) and whether a Ctrl-C (SIGINT) stopped the run.

    The signal handlers in place before the run are in place after it. Tune installs its handler only where it
    can: in the main thread, without ``TUNE_DISABLE_SIGINT_HANDLER=1``, with the tuner in this process (under
    Ray Client Tune's loop runs on the head node, and a Ctrl-C here interrupts ``fit()`` itself). Where it did,
    a SIGINT handler that is the old one again after the run means that Tune's fired, and put it back."""
    main = threading.current_thread() is threading.main_thread()
    before = {sig: signal.getsignal(sig) for sig in _SIGNALS} if main else {}
    tune_catches = (main and not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") or 0)
                    and getattr(tuner, "_local_tuner", None) is not None)
    with _restore_failures() as failures:
        try:
            results = list(tuner.fit())
        finally:
            caught = tune_catches and signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
            for sig, handler in before.items():
                signal.signal(sig, handler)
    for exc in failures:
        log.warning("Ray Tune could not restore the experiment from its saved state (%s: %s) and ran it without the "
                    "trials saved there: finished trials keep their outputs, unfinished ones start over",
                    type(exc).__name__, str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else "")
    return results, caught


# Where Ray Tune 2.60 logs a restore it could not read (TuneController.__init__), and what it says.
_RESTORE_LOGGER, _RESTORE_FAILED = "ray.tune.execution.tune_controller", "Failed to restore the run state"


class _RestoreFailures(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(_RESTORE_FAILED):
            self.errors.append(record.exc_info[1] if record.exc_info else RuntimeError(record.getMessage()))


@contextlib.contextmanager
def _restore_failures():
    """The exceptions of the restores Tune could not read while in the block. Tune's logger is let through to
    ERROR for it; what bench's setting (``bench.tuner``: ray.tune at CRITICAL) would have hidden stays hidden."""
    logger, handler = logging.getLogger(_RESTORE_LOGGER), _RestoreFailures()
    level, propagate = logger.level, logger.propagate
    if not logger.isEnabledFor(logging.ERROR):
        logger.setLevel(logging.ERROR)
        logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler.errors
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def skip_callback_usage_tag() -> None:
    """Keep Ray Tune from importing mlflow and wandb at every ``fit()`` when usage statistics are off.

    Ray 2.60's Tune counts the classes of the callbacks it is given for its usage statistics
    (``ray.air._internal.usage.tag_callbacks``), and to do so imports its MLflow, W&B and Comet integrations,
    and with them mlflow and wandb: 1.3 CPU-seconds in every ``bench run`` driver, also when the grid tracks
    nothing. Nothing of it leaves the machine when the statistics are off (``bench.tuner.ray_env`` turns them off
    unless ``RAY_USAGE_STATS_ENABLED`` says otherwise); then the count is skipped. With them on, or on a Ray without
    this function, nothing changes (tests/test_startup_imports.py shows both the cost and its removal)."""
    try:
        from ray._common.usage import usage_lib
        from ray.air._internal import usage as air_usage
    except ImportError:
        return
    if hasattr(air_usage, "tag_callbacks") and not usage_lib.usage_stats_enabled():
        air_usage.tag_callbacks = _no_callback_usage_tag


def _no_callback_usage_tag(callbacks) -> bool:
    return False  # as Ray's own function when it records nothing
