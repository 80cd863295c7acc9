"""The stage machinery of a trial (:func:`bench.trial.run_trial`): entering a stage (re-initialise the classifier,
freeze what does not train, make or restore the optimiser) and the post-hoc step after the last stage. Plain
PyTorch around :mod:`bench.engine`; the stages themselves are :mod:`strategies.stages`."""

from __future__ import annotations

import logging

log = logging.getLogger("bench.trial")


def enter_stage(k: int, epoch: int, stages: list, spans: list, *, model, n_labels: int, dev, tr, optimizer, state,
                 seed: int, fold: int):
    """Set the model and optimiser up for stage ``k`` at ``epoch``: at the stage's first epoch re-initialise the
    classifier if it asks and make a fresh optimiser if it restarts; when resuming (``state``: the checkpoint)
    rebuild the optimiser of the stage's segment and restore it, and the loss's own state, from the checkpoint.
    Returns the optimiser and the module trained alone (the classifier) or None."""
    from bench import engine, seeding
    from strategies import stages as stages_lib

    stage = stages[k]
    at_start = epoch == spans[k][0]
    if at_start and stage.reinit:
        seeding.seed_torch(seed, fold, "reinit", k)  # the same classifier again after a resume
        engine.reset_classifier(model, n_labels, dev)
    params = engine.trainable(model, stage.train)
    stage.loss.to(dev.device)
    if state is not None and int(state.get("stage", k)) == k and state.get("loss"):
        stage.loss.load_state_dict(state["loss"])  # resumed inside the stage: AUC-M's a, b, alpha
    fresh = at_start and (stage.restart or k == 0)
    if optimizer is None or fresh:
        first, _ = stages_lib.segment(k, stages)
        base = stages[first]
        opt_params = engine.trainable(model, base.train) if first != k else params
        engine.trainable(model, stage.train)
        optimizer = stage.loss.make_optimizer(opt_params, lr=float(tr.lr), weight_decay=float(tr.weight_decay)) or \
            engine.make_optimizer(opt_params, name=tr.optimizer, lr=float(tr.lr), weight_decay=float(tr.weight_decay))
        if state is not None and not fresh:
            optimizer.load_state_dict(state["optimizer"])
    log.info("stage %d/%d %r from epoch %d (%s)", k + 1, len(stages), stage.name, epoch + 1, stage.train)
    return optimizer, (engine.classifier(model) if stage.train == "classifier" else None)


def posthoc(strategy, model, net, images, val, y, *, dev, batch_size: int, adjust) -> None:
    """Fit the strategy's post-hoc step on the validation part (``adjust``: the loss's logit correction, applied
    before the sigmoid) and apply it to the model's classifier."""
    from bench import engine

    logits = engine.predict_logits(net, images, val, batch_size=batch_size, dev=dev)
    weight, bias = engine.classifier_rows(model)
    strategy.posthoc.fit(weight, bias, logits, y[val], adjust=adjust)
    engine.scale_classifier_rows(model, strategy.posthoc.scale_)


def describe(strategy, epochs: int, history: list[dict]) -> dict:
    """What ``metrics.json`` records of the strategy's training: ``stages`` (what each trained, over which epochs,
    1-based and inclusive) and ``posthoc`` for a staged strategy; for every strategy ``stage_steps``, the optimiser
    steps each stage took (from ``history``'s ``train_steps``; None for epochs recorded without them), and
    ``warnings``, one per stage whose loss declares a :attr:`~strategies.base.Loss.min_steps` it did not reach
    (``too_few_steps``) or cannot be shown to have reached (``steps_unknown``), each also logged."""
    spans = strategy.stage_bounds(epochs)
    doc: dict = {}
    if strategy.staged:
        doc["stages"] = [{**st.describe(), "epochs": [a + 1, b]} for st, (a, b) in zip(strategy.stages, spans)]
        if strategy.posthoc is not None:
            doc["posthoc"] = strategy.posthoc.describe()
    steps, warnings = [], []
    for k, (st, (a, b)) in enumerate(zip(strategy.stages, spans)):
        counts = [h.get("train_steps") for h in history if a < int(h["epoch"]) <= b]
        n = int(sum(counts)) if counts and None not in counts else None
        steps.append(n)
        floor = st.loss.min_steps
        where = f"stage {k + 1} ({st.name!r}) " if len(strategy.stages) > 1 else ""
        if counts and n is None and floor is not None:  # resumed from a checkpoint written before steps were counted
            warnings.append({
                "kind": "steps_unknown", "stage": st.name, "loss": st.loss.name, "min_steps": int(floor),
                "message": f"{where}trained the {st.loss.name} loss for an unknown number of optimiser steps (epochs "
                           f"from a checkpoint that did not count them); it needs {floor} to learn (README, "
                           "Strategies)"})
            log.warning("%s: %s", strategy.name, warnings[-1]["message"])
        elif n is not None and floor is not None and n < floor:
            warnings.append({
                "kind": "too_few_steps", "stage": st.name, "loss": st.loss.name, "steps": n, "min_steps": int(floor),
                "message": f"{where}trained the {st.loss.name} loss for {n} optimiser steps, "
                           f"fewer than the {floor} it needs to learn (README, Strategies); give it more epochs or "
                           "images, or read its metrics as an under-trained model's"})
            log.warning("%s: %s", strategy.name, warnings[-1]["message"])
    return {**doc, "stage_steps": steps, "warnings": warnings}
