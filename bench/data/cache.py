"""The image cache: every image decoded and resized once per (dataset, size).

Images are stored as one uint8 array (N, S, S) in a ``.npy`` file opened memory-mapped and
read-only by every trial on a node, next to a JSON manifest holding the cache key, the image
ids in row order and the images that could not be read. The key hashes the dataset's
fingerprint, its image paths and the size, so two datasets or two sizes never share a cache.

Building is guarded by a file lock (one builder per node; other trials wait and reuse it), writes
to temporary names and renames them into place last, so an interrupted build is never mistaken
for a finished one. It uses every core of the node: a pool of processes decodes chunks of images
and writes them straight into the temporary memory-mapped array, while the builder reports
progress with a rate and an ETA (a callback such as the CLI's progress bar, and a log line).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from bench.data.images import ImageReadError, load_gray
from bench.errors import BenchError

if TYPE_CHECKING:  # not imported at run time: the decoding processes start faster without pandas
    from bench.data.labels import Records

log = logging.getLogger(__name__)
#: Part of every cache key. 2: DICOM images decode (a version-1 cache listed them as unreadable).
CACHE_VERSION = 2
CHUNK = 256  # images per task of the decoding pool
PROGRESS_LOG_S = 30.0  # seconds between the build's progress log lines


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "cxr-bench")


def cache_key(records: Records, size: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{size}|{records.kind}|".encode())
    h.update(records.fingerprint().encode())
    h.update("\n".join(map(str, records.paths)).encode())
    return h.hexdigest()[:20]


def resize_gray(img: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W) uint8 to (size, size) with Pillow's antialiased bilinear filter."""
    from PIL import Image

    if img.shape == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))


@dataclass
class ImageCache:
    """An opened cache. ``images`` is (N, S, S) uint8, memory-mapped read-only."""

    path: Path
    key: str
    size: int
    image_ids: list[str]
    bad: dict[str, str]
    seconds: float = 0.0

    @property
    def array_file(self) -> Path:
        return self.path / f"{self.key}.npy"

    def open(self) -> np.ndarray:
        return np.load(self.array_file, mmap_mode="r")

    def open_for(self, image_ids) -> np.ndarray:
        """The images of ``image_ids``, in that order: the memory map itself when its first rows are
        exactly those images (the usual case), else a copy of their rows. Refuses unreadable images."""
        rows = self.rows_for(image_ids)
        images = self.open()
        return images if np.array_equal(rows, np.arange(len(rows))) else images[rows]

    def rows_for(self, image_ids) -> np.ndarray:
        """Cache rows of ``image_ids``; raises if one is absent or was unreadable (never zeros)."""
        pos = {k: i for i, k in enumerate(self.image_ids)}
        out = np.empty(len(image_ids), dtype=np.int64)
        for j, k in enumerate(image_ids):
            if k in self.bad:
                raise RuntimeError(f"image {k!r} is unreadable in the cache ({self.bad[k]}) and must not be used")
            try:
                out[j] = pos[k]
            except KeyError:
                raise RuntimeError(f"image {k!r} is not in cache {self.key}: the cache belongs to another "
                                   "dataset") from None
        return out


def _manifest_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{key}.json"


def open_cache(records: Records, size: int, cache_dir: Path | None = None) -> ImageCache | None:
    """The finished cache for these records and size, or None. Verifies key and image ids."""
    cache_dir = Path(cache_dir or default_cache_dir())
    key = cache_key(records, size)
    mf = _manifest_file(cache_dir, key)
    if not mf.is_file() or not (cache_dir / f"{key}.npy").is_file():
        return None
    meta = json.loads(mf.read_text())
    if meta.get("key") != key or meta.get("size") != size or meta.get("n") != len(records):
        raise RuntimeError(f"cache manifest {mf} does not match its dataset (key/size/count); delete it")
    ids_hash = hashlib.sha256("\n".join(map(str, records.image_ids)).encode()).hexdigest()
    if meta.get("image_ids_sha256") != ids_hash:
        raise RuntimeError(f"cache {mf} holds other images than this dataset; delete it")
    bad = dict(meta.get("bad", {}))
    if bad and _bad_images_replaced(records, bad, since=mf.stat().st_mtime):
        log.info("cache %s: an image recorded as unreadable has been replaced since; building it again", key)
        return None
    return ImageCache(cache_dir, key, size, list(map(str, records.image_ids)), bad, float(meta.get("seconds", 0.0)))


def _bad_images_replaced(records: Records, bad: dict[str, str], *, since: float) -> bool:
    """True when a file the cache recorded as unreadable has appeared or been written after ``since``."""
    path_of = dict(zip(map(str, records.image_ids), records.paths))
    for image_id, reason in bad.items():
        try:
            st = os.stat(path_of[image_id])
        except (KeyError, OSError, ValueError):
            continue
        if reason.endswith("file missing") or st.st_mtime > since:
            return True
    return False


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_cache(records: Records, size: int, cache_dir: Path | None = None, *,
                progress: Callable[[int, int], None] | None = None, workers: int | None = None,
                chunk: int = CHUNK, source: ImageCache | None = None) -> ImageCache:
    """Open the cache for (records, size), building it first if needed.

    The images are decoded by ``workers`` processes (default: every core this process may use,
    :func:`available_cores`), ``chunk`` images per task, each writing its rows into the memory-mapped
    array; with one worker, or a single chunk, they are decoded in this process. The array is the same
    byte for byte whatever the number of workers. ``progress(done, total)`` is called after each chunk;
    a log line gives the rate and the ETA every ``PROGRESS_LOG_S`` seconds.

    Unreadable images are recorded in ``cache.bad`` (path -> reason) and their rows left zero;
    callers must exclude or refuse them (:meth:`ImageCache.rows_for` refuses them). ``source``, an
    opened cache of the same size holding every one of ``records`` (the cache of a dataset before its
    unreadable images were excluded), is copied from instead of decoding the images again.
    """
    from filelock import FileLock

    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk}")
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(records, size)
    with FileLock(str(cache_dir / f"{key}.lock")):
        found = open_cache(records, size, cache_dir)
        if found is not None:
            return found
        return _build(records, size, cache_dir, key, progress=progress, workers=workers or available_cores(),
                      chunk=chunk, source=source)


def _build(records: Records, size: int, cache_dir: Path, key: str, *, progress, workers: int, chunk: int,
           source: ImageCache | None = None) -> ImageCache:
    n = len(records)
    t0 = time.perf_counter()
    tmp_npy = cache_dir / f"{key}.npy.tmp{os.getpid()}"
    tmp_json = cache_dir / f"{key}.json.tmp{os.getpid()}"
    arr = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.uint8, shape=(n, size, size))
    bad: dict[str, str] = {}
    used = 1
    try:
        if source is not None:
            if source.size != size:
                raise ValueError(f"source cache {source.key} holds {source.size}-px images, not {size}-px")
            rows, src = source.rows_for(records.image_ids), source.open()  # refuses images it lacks or could not read
            for start in range(0, n, 1024):
                arr[start:start + 1024] = src[rows[start:start + 1024]]
            arr.flush()
            del arr
            if progress:
                progress(n, n)
        else:
            arr.flush()
            del arr  # the decoders write through their own maps of the file
            failed, used = _decode_into(tmp_npy, [str(p) for p in records.paths], size, workers=workers, chunk=chunk,
                                        progress=_Progress(n, progress, size=size))
            for i in sorted(failed):  # in row order, whatever order the chunks finished in
                bad[str(records.image_ids[i])] = f"{records.paths[i]}: {failed[i]}"
        seconds = time.perf_counter() - t0
        meta = {"key": key, "version": CACHE_VERSION, "size": size, "n": n, "kind": records.kind,
                "root": records.root, "fingerprint": records.fingerprint(),
                "image_ids_sha256": hashlib.sha256("\n".join(map(str, records.image_ids)).encode()).hexdigest(),
                "bad": bad, "seconds": round(seconds, 3), "workers": used,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.replace(tmp_npy, cache_dir / f"{key}.npy")
        tmp_json.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_json, _manifest_file(cache_dir, key))  # the manifest last: it marks completion
    except BaseException:
        tmp_npy.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
        raise
    log.info("built image cache %s: %d images at %d px in %.1fs with %d worker(s) (%.0f images/s; %d unreadable)",
             key, n, size, seconds, used, n / max(seconds, 1e-9), len(bad))
    return ImageCache(cache_dir, key, size, list(map(str, records.image_ids)), bad, seconds)


class _Progress:
    """Counts decoded images; calls the caller's ``progress(done, total)`` and logs the rate and ETA."""

    def __init__(self, total: int, callback: Callable[[int, int], None] | None, *, size: int):
        self.total, self.callback, self.size = total, callback, size
        self.done, self.t0 = 0, time.perf_counter()
        self.logged = self.t0

    def add(self, count: int) -> None:
        self.done += count
        if self.callback:
            self.callback(self.done, self.total)
        now = time.perf_counter()
        if now - self.logged >= PROGRESS_LOG_S and self.done < self.total:
            self.logged = now
            rate = self.done / max(now - self.t0, 1e-9)
            log.info("caching %d px images: %d/%d (%.0f images/s, ETA %s)", self.size, self.done, self.total, rate,
                     _clock((self.total - self.done) / rate))


def _clock(seconds: float) -> str:
    """``seconds`` as h:mm:ss (or m:ss under an hour)."""
    s = int(math.ceil(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _decode_chunk(npy: str, start: int, paths: list[str], size: int) -> dict[int, str]:
    """Decode ``paths`` into rows ``start...`` of the ``.npy`` file ``npy``; returns {row: reason} of the
    unreadable ones (their rows stay zero). Runs in the pool's processes, or in the builder's."""
    arr = np.load(npy, mmap_mode="r+")
    failed: dict[int, str] = {}
    for j, path in enumerate(paths):
        try:
            arr[start + j] = resize_gray(load_gray(path), size)
        except FileNotFoundError:
            failed[start + j] = "file missing"
        except ImageReadError as exc:
            failed[start + j] = str(exc).split(": ", 1)[-1]
    arr.flush()
    return failed


def _ignore_sigint() -> None:
    # Ctrl-C reaches every process of the terminal's group: the builder alone handles it (it cancels the
    # chunks not started, waits for the running ones and removes its temporary file).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_into(npy: Path, paths: list[str], size: int, *, workers: int, chunk: int,
                 progress: _Progress) -> tuple[dict[int, str], int]:
    """Decode every image into ``npy``; returns ({row: reason} of the unreadable ones, workers used)."""
    starts = list(range(0, len(paths), chunk))
    workers = min(workers, len(starts))
    failed: dict[int, str] = {}
    if workers <= 1:
        for start in starts:
            failed.update(_decode_chunk(str(npy), start, paths[start:start + chunk], size))
            progress.add(len(paths[start:start + chunk]))
        return failed, 1
    # spawn, not fork: the builder may be a Ray driver or worker with threads of its own.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
    try:
        pending = {pool.submit(_decode_chunk, str(npy), start, paths[start:start + chunk], size):
                   len(paths[start:start + chunk]) for start in starts}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                failed.update(fut.result())
                progress.add(pending.pop(fut))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failed, workers


def exclude_bad(records: Records, cache: ImageCache, *, policy: str) -> Records:
    """Drop the rows whose image was unreadable (policy ``exclude``) or refuse them (``fail``)."""
    if not cache.bad:
        return records
    listing = "; ".join(list(cache.bad.values())[:5]) + (" ..." if len(cache.bad) > 5 else "")
    if policy == "fail":
        raise BenchError(f"{len(cache.bad)} unreadable image(s): {listing} "
                         "(set dataset.on_bad_image: exclude to leave them out)")
    log.warning("excluding %d unreadable image(s): %s", len(cache.bad), listing)
    keep = np.array([str(i) not in cache.bad for i in records.image_ids])
    out = records.subset(keep)
    out.dropped = {**records.dropped, "unreadable image": int((~keep).sum())}
    return out
