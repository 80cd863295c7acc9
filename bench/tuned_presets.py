"""A tuned preset's record of the split it was tuned on, and the check every run makes against it.

``bench tune`` (:mod:`bench.tune_search`) writes the record (:func:`tuning_record`) into the preset;
``bench run`` (:mod:`bench.run`) calls :func:`check_presets` before it writes anything, so a preset whose
search saw any of the run's held-out images is refused (see :mod:`bench.tune_search` for why per fold).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import TYPE_CHECKING, Iterable

import numpy as np

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.data.splits import SplitManifest


# ---- the record of which images each fold's search saw -------------------------------------------------

def tuning_record(manifest: "SplitManifest") -> dict:
    """What a tuned preset stores about its split: the hash and settings, and every image id with its
    held-out fold (little-endian int16, zlib + base64, with a sha256 of the decoded content; -1: an image of an
    official training list, held out by no fold). Fold F's search saw the images whose held-out fold is not F.

    >>> from bench.data.splits import SplitManifest
    >>> m = SplitManifest(n_folds=2, seed=0, val_fraction=0.5, fingerprint="fp", image_ids=["a", "b", "c", "d"],
    ...                   folds=[0, 1, 0, 1], val={0: [1], 1: [0]})
    >>> ids, held = decode_images(tuning_record(m)["images"], where="x.yaml")
    >>> ids[held != 0].tolist()
    ['b', 'd']
    """
    ids = "\n".join(str(i) for i in manifest.image_ids).encode()
    held = np.asarray(manifest.folds, dtype="<i2").tobytes()  # the bytes of uint16 for folds >= 0 (older presets)
    return {
        "split": {"hash": manifest.hash, "n_folds": int(manifest.n_folds), "seed": int(manifest.seed),
                  "val_fraction": float(manifest.val_fraction), "fingerprint": manifest.fingerprint},
        "images": {"count": len(manifest.image_ids), "encoding": "zlib+base64",
                   "sha256": hashlib.sha256(ids + b"\0" + held).hexdigest(),
                   "image_ids": base64.b64encode(zlib.compress(ids, 9)).decode(),
                   "held_out_fold": base64.b64encode(zlib.compress(held, 9)).decode()},
    }


def decode_images(images: dict, *, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, held-out fold of each) from a preset's ``tuned.images``; a damaged or edited record is
    a :class:`BenchError` naming ``where``."""
    damaged = f"{where}: tuned.images is damaged or was edited"
    try:
        ids = zlib.decompress(base64.b64decode(images["image_ids"], validate=True))
        held = zlib.decompress(base64.b64decode(images["held_out_fold"], validate=True))
        expected = str(images["sha256"])
    except (KeyError, TypeError, ValueError, binascii.Error, zlib.error) as exc:
        raise BenchError(f"{damaged} ({type(exc).__name__}); tune the preset again") from None
    if hashlib.sha256(ids + b"\0" + held).hexdigest() != expected:
        raise BenchError(f"{damaged} (its sha256 does not match its content); tune the preset again")
    id_list = np.asarray(ids.decode().split("\n"), dtype=object)
    folds = np.frombuffer(held, dtype="<i2").astype(np.int64)
    if len(id_list) != len(folds):
        raise BenchError(f"{damaged} ({len(id_list)} image ids, {len(folds)} fold numbers); tune the preset again")
    return id_list, folds


def check_presets(strategies: Iterable, manifest: "SplitManifest", *, grid: str = "GRID") -> None:
    """Refuse a preset tuned by ``bench tune`` that could leak a held-out image into this run.

    For every strategy named in the grid that is a tuned preset file: it must hold a parameter set for
    every fold of ``manifest`` and the record of the images each fold's search saw; those images must not
    include any image of the run's held-out fold F (compared by image id); each fold's parameters must be
    valid. Raises :class:`BenchError` with one line naming the preset file, the fold and the overlap.
    Compositions (``{preset: NAME_tuned, ...}``) are refused when the grid is read.
    """
    from strategies import STRATEGIES, create_strategy, fold_spec, resolve_spec

    run_ids = np.asarray([str(i) for i in manifest.image_ids], dtype=object)
    run_folds = np.asarray(manifest.folds, dtype=np.int64)
    for name in strategies:
        if not isinstance(name, str):
            continue
        meta = STRATEGIES.get(name).meta
        tuned, folds = meta.get("tuned"), meta.get("folds")
        if tuned is None and folds is None:
            continue
        where = meta.get("file") or f"preset {name!r}"
        source = tuned.get("from") if isinstance(tuned, dict) else None
        again = f"tune it again on this grid's split (bench tune --grid {grid} --strategy {source or 'STRATEGY'})"
        if not folds or not isinstance(tuned, dict) or "images" not in tuned:
            raise BenchError(f"{where}: preset {name!r} does not record per fold which images it was tuned on "
                             f"(an older bench tune tuned it on one fold, whose images are other folds' test "
                             f"images); {again}")
        ids, held = decode_images(tuned["images"], where=where)
        tuned_hash = str((tuned.get("split") or {}).get("hash", "unknown"))[:12]
        for fold in range(manifest.n_folds):
            if fold not in folds:
                raise BenchError(f"{where}: preset {name!r} holds tuned parameters for folds {sorted(folds)}, "
                                 f"this run also holds out fold {fold}; {again}")
            seen = ids[held != fold]
            overlap = int(np.isin(run_ids[run_folds == fold], seen).sum())
            if overlap:
                raise BenchError(f"{where}: preset {name!r} was tuned on {overlap} image(s) of this run's held-out "
                                 f"fold {fold} (tuning split {tuned_hash}, this run's split {manifest.hash[:12]}); "
                                 f"{again}")
            try:
                create_strategy(fold_spec(resolve_spec(name), fold))
            except (KeyError, ValueError) as exc:
                msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
                raise BenchError(f"{where}: preset {name!r}, folds.{fold}: {msg}") from None
