"""The image cache shipped through the run's storage, so a node needs neither the dataset nor a cache build.

A GPU node should train, not decode 112,120 PNGs while holding a GPU, and a cluster's workers usually have
no copy of the dataset folder. With ``bench run --storage PATH|s3://...|gs://...`` the driver builds the
cache once (on its own cores, off the GPUs), then :func:`publish` uploads it beside the experiment::

    STORAGE/_image_cache/<key>/<key>.npy      the uint8 (N, S, S) array, byte for byte the driver's
    STORAGE/_image_cache/<key>/<key>.sha256   its SHA-256, written after the array
    STORAGE/_image_cache/<key>/<key>.json     the cache manifest, written last: it marks the upload complete

A cache already published with the same checksum is not uploaded again (another run on the same data and
size reuses it). A trial on a node without the cache calls :func:`fetch`: one download per node (a file lock
in the node's cache folder), streamed to a temporary file while hashing it, refused if the checksum differs,
and renamed into place only when complete, so an interrupted download is never mistaken for a cache.

Local folders, ``s3://`` (with a custom endpoint through ``AWS_ENDPOINT_URL``, as the tests' local server)
and ``gs://`` go through pyarrow's filesystems, the ones Ray Tune uses for the same storage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER = "_image_cache"
BLOCK = 8 << 20  # bytes per read / write
LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class CacheRef:
    """Where a run's cache was published: enough for any node to fetch and verify it."""

    storage: str   # the storage as the user gave it (a path, s3://bucket/prefix, gs://...)
    key: str
    sha256: str
    bytes: int
    endpoint: str | None = None  # the driver's custom S3 endpoint: nodes reach the bucket the driver wrote to

    def to_dict(self) -> dict:
        return asdict(self)


def _filesystem(storage: str, endpoint: str | None = None):
    """(pyarrow filesystem, base path inside it) for ``storage`` (``endpoint``: a custom S3 endpoint)."""
    import pyarrow.fs as pafs

    from bench.storage import storage_filesystem

    if "://" not in storage:
        return pafs.LocalFileSystem(), str(Path(storage).expanduser().resolve())
    custom = storage_filesystem(storage, endpoint)
    if custom is not None:
        return custom, storage.split("://", 1)[1].rstrip("/")
    fs, path = pafs.FileSystem.from_uri(storage)
    return fs, path.rstrip("/")


def _files(base: str, key: str) -> dict[str, str]:
    folder = f"{base}/{FOLDER}/{key}"
    return {"npy": f"{folder}/{key}.npy", "sha256": f"{folder}/{key}.sha256", "json": f"{folder}/{key}.json",
            "folder": folder}


def _read_text(fs, path: str) -> str | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def _write_text(fs, path: str, text: str) -> None:
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def file_sha256(path: Path) -> str:
    """SHA-256 of a local file, remembered beside it (``<file>.sha256``, trusted while its size and mtime
    match) so a large cache is hashed once."""
    side = path.with_name(path.name + ".sha256")
    st = path.stat()
    stamp = f"{st.st_size} {st.st_mtime_ns}"
    if side.is_file():
        saved = side.read_text().split()
        if len(saved) == 3 and " ".join(saved[1:]) == stamp:
            return saved[0]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    tmp = side.with_name(side.name + f".tmp{os.getpid()}")
    tmp.write_text(f"{h.hexdigest()} {stamp}\n")
    os.replace(tmp, side)
    return h.hexdigest()


class _Rate:
    def __init__(self, what: str, total: int):
        self.what, self.total, self.done, self.t0, self.last = what, total, 0, time.perf_counter(), time.perf_counter()

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= LOG_EVERY_S:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            log.info("%s: %.0f of %.0f MB (%.0f MB/s, %.0f s left)", self.what, self.done / 1e6, self.total / 1e6,
                     rate / 1e6, (self.total - self.done) / max(rate, 1e-9))


def publish(cache, storage: str, *, say=lambda s: None) -> CacheRef:
    """Upload an opened :class:`bench.data.cache.ImageCache` to ``storage`` (unless the same bytes are there)."""
    from bench.storage import s3_endpoint

    endpoint = s3_endpoint() if storage.startswith("s3://") else None
    fs, base = _filesystem(storage, endpoint)
    files = _files(base, cache.key)
    npy = cache.array_file
    digest, size = file_sha256(npy), npy.stat().st_size
    ref = CacheRef(storage=storage, key=cache.key, sha256=digest, bytes=size, endpoint=endpoint)
    if _read_text(fs, files["json"]) is not None and (_read_text(fs, files["sha256"]) or "").strip() == digest:
        say(f"image cache {cache.key} already in {storage} ({size / 1e6:,.0f} MB): not uploaded again")
        return ref
    say(f"publishing image cache {cache.key} ({size / 1e6:,.0f} MB) to {storage} for nodes without it")
    fs.create_dir(files["folder"], recursive=True)
    rate = _Rate(f"uploading image cache {cache.key}", size)
    with open(npy, "rb") as src, fs.open_output_stream(files["npy"]) as dst:
        while block := src.read(BLOCK):
            dst.write(block)
            rate.add(len(block))
    _write_text(fs, files["sha256"], digest + "\n")
    manifest = npy.with_suffix(".json")
    _write_text(fs, files["json"], manifest.read_text())  # last: marks the upload complete
    return ref


def fetch(ref: CacheRef | dict, cache_dir: Path) -> None:
    """Download a published cache into ``cache_dir`` (the node's cache folder), verified by its checksum.

    Raises ``RuntimeError`` naming the storage when the cache is missing there or its bytes differ."""
    from filelock import FileLock

    ref = ref if isinstance(ref, CacheRef) else CacheRef(**ref)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    npy, manifest = cache_dir / f"{ref.key}.npy", cache_dir / f"{ref.key}.json"
    with FileLock(str(cache_dir / f"{ref.key}.lock")):
        if manifest.is_file() and npy.is_file():
            return  # another trial of this node fetched it while this one waited
        fs, base = _filesystem(ref.storage, ref.endpoint)
        files = _files(base, ref.key)
        meta = _read_text(fs, files["json"])
        if meta is None:
            raise RuntimeError(f"image cache {ref.key} is not in {ref.storage} ({files['json']} missing): the driver "
                               "publishes it there before any trial starts; was the storage emptied?")
        tmp = cache_dir / f"{ref.key}.npy.tmp{os.getpid()}"
        h = hashlib.sha256()
        rate = _Rate(f"fetching image cache {ref.key}", ref.bytes)
        t0 = time.perf_counter()
        try:
            with fs.open_input_stream(files["npy"]) as src, open(tmp, "wb") as dst:
                while block := src.read(BLOCK):
                    h.update(block)
                    dst.write(block)
                    rate.add(len(block))
            if h.hexdigest() != ref.sha256:
                raise RuntimeError(f"image cache {ref.key} in {ref.storage} does not match its checksum (sha256 "
                                   f"{h.hexdigest()[:12]}, published {ref.sha256[:12]}): it was changed or truncated; "
                                   "run again to publish it anew")
            os.replace(tmp, npy)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp_json = manifest.with_name(manifest.name + f".tmp{os.getpid()}")
        tmp_json.write_text(json.dumps({**json.loads(meta), "fetched_from": ref.storage}, indent=1))
        os.replace(tmp_json, manifest)  # last: marks the cache complete for open_cache
        log.info("fetched image cache %s from %s: %.0f MB in %.1f s", ref.key, ref.storage, ref.bytes / 1e6,
                 time.perf_counter() - t0)
