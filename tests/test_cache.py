"""The image cache: one build per (dataset, size), bad images listed (never zeros), atomic builds."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

import bench.data.cache as cache_mod
from bench.data.cache import build_cache, cache_key, exclude_bad, open_cache
from bench.data.images import ImageReadError, load_gray, to_gray_u8
from bench.data.labels import Records
from bench.errors import BenchError


def make_records(tmp_path, n=6, *, extra=()):
    paths, ids = [], []
    rng = np.random.default_rng(0)
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(p)
        paths.append(str(p))
        ids.append(p.name)
    for name, writer in extra:
        p = tmp_path / name
        writer(p)
        paths.append(str(p))
        ids.append(name)
    y = np.zeros((len(paths), 2), dtype=np.float32)
    y[::2, 0] = 1
    return Records(labels=y, label_names=("A", "B"), image_ids=ids, paths=paths,
                   patients=[f"p{i // 2}" for i in range(len(paths))], kind="test", root=str(tmp_path))


def test_modes_and_bit_depths_decode_to_gray(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 90
    rgb[..., 1] = 120
    rgb[..., 2] = 150
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((8, 8), 7, np.uint8)])).save(tmp_path / "rgba.png")
    sixteen = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(sixteen).save(tmp_path / "16bit.png")
    assert load_gray(str(tmp_path / "rgb.png"))[0, 0] == 120
    assert load_gray(str(tmp_path / "rgba.png"))[0, 0] == 120  # alpha ignored
    g16 = load_gray(str(tmp_path / "16bit.png"))
    assert g16.dtype == np.uint8 and g16.min() == 0 and g16.max() == 255  # own range -> 0..255
    assert np.all(np.diff(g16.ravel().astype(int)) >= 0)
    assert to_gray_u8(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]


def test_build_reuse_and_sizes(tmp_path):
    rec = make_records(tmp_path)
    cache = build_cache(rec, 16, tmp_path / "c")
    arr = cache.open()
    assert arr.shape == (6, 16, 16) and arr.dtype == np.uint8 and not cache.bad
    assert not arr.flags.writeable
    again = build_cache(rec, 16, tmp_path / "c")
    assert again.key == cache.key and again.array_file.stat().st_mtime == cache.array_file.stat().st_mtime
    other = build_cache(rec, 24, tmp_path / "c")
    assert other.key != cache.key and other.open().shape == (6, 24, 24)
    assert cache_key(rec.subset([0, 1, 2]), 16) != cache.key  # another dataset, another cache
    np.testing.assert_array_equal(cache.rows_for([rec.image_ids[3], rec.image_ids[1]]), [3, 1])
    with pytest.raises(RuntimeError, match="not in cache"):
        cache.rows_for(["elsewhere.png"])


def bad_extras(tmp_path):
    return [
        ("empty.png", lambda p: p.write_bytes(b"")),
        ("corrupt.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")),
        ("truncated.png", lambda p: p.write_bytes((tmp_path / "img0.png").read_bytes()[:60])),
        ("sixteen.png", lambda p: Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(p)),
    ]


# workers=2 with chunks of 3 images: the bad images fall into different chunks of the process pool.
@pytest.mark.parametrize("workers", [1, 2])
def test_bad_images_are_listed_and_excluded_or_refused(tmp_path, workers):
    rec = make_records(tmp_path, extra=bad_extras(tmp_path))
    rec.paths[1] = str(tmp_path / "missing.png")
    cache = build_cache(rec, 16, tmp_path / "c", workers=workers, chunk=3)
    assert set(cache.bad) == {"img1.png", "empty.png", "corrupt.png", "truncated.png"}
    assert json.loads((tmp_path / "c" / f"{cache.key}.json").read_text())["workers"] == workers
    assert "zero-byte" in cache.bad["empty.png"] and "file missing" in cache.bad["img1.png"]
    with pytest.raises(RuntimeError, match="unreadable"):
        cache.rows_for(["corrupt.png"])  # never handed out as zeros
    kept = exclude_bad(rec, cache, policy="exclude")
    assert len(kept) == len(rec) - 4 and "sixteen.png" in set(kept.image_ids)
    assert kept.dropped["unreadable image"] == 4
    with pytest.raises(BenchError, match=r"4 unreadable image\(s\): .*dataset.on_bad_image"):
        exclude_bad(rec, cache, policy="fail")
    with pytest.raises(ImageReadError, match="zero-byte"):
        load_gray(str(tmp_path / "empty.png"))


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path, workers):
    rec = make_records(tmp_path, n=300)

    def boom(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(rec, 16, tmp_path / "c", progress=boom, workers=workers, chunk=20)
    assert open_cache(rec, 16, tmp_path / "c") is None
    assert not list((tmp_path / "c").glob("*.npy")) and not list((tmp_path / "c").glob("*.json"))
    assert build_cache(rec, 16, tmp_path / "c").open().shape == (300, 16, 16)


def test_parallel_build_is_byte_identical_to_serial(tmp_path):
    """The process pool writes exactly the serial build's array and lists the same bad images, in row order."""
    rng = np.random.default_rng(1)
    extra = [(f"big{i}.png", lambda p, i=i: Image.fromarray(rng.integers(0, 255, (90 + i, 70), dtype=np.uint8)).save(p))
             for i in range(5)]
    rec = make_records(tmp_path, n=23, extra=[*extra, *bad_extras(tmp_path)])
    rec.paths[7] = str(tmp_path / "missing.png")
    serial = build_cache(rec, 24, tmp_path / "serial", workers=1, chunk=4)
    pooled = build_cache(rec, 24, tmp_path / "pooled", workers=2, chunk=4)
    assert serial.array_file.read_bytes() == pooled.array_file.read_bytes()
    assert list(serial.bad.items()) == list(pooled.bad.items()) and len(serial.bad) == 4
    assert serial.open()[0].any() and not pooled.open()[7].any()  # decoded rows filled, a bad one left zero
    one_chunk = build_cache(rec, 24, tmp_path / "one", workers=2)  # fewer images than a chunk: in-process
    assert one_chunk.array_file.read_bytes() == serial.array_file.read_bytes()
    assert json.loads((tmp_path / "one" / f"{one_chunk.key}.json").read_text())["workers"] == 1


def test_parallel_build_reports_progress_and_eta(tmp_path, monkeypatch, caplog):
    rec = make_records(tmp_path, n=40)
    calls = []
    monkeypatch.setattr(cache_mod, "PROGRESS_LOG_S", 0.0)
    with caplog.at_level(logging.INFO, logger="bench.data.cache"):
        build_cache(rec, 16, tmp_path / "c", workers=2, chunk=6, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert len(calls) == 7 and done == sorted(done) and calls[-1] == (40, 40) and {t for _, t in calls} == {40}
    lines = [r.getMessage() for r in caplog.records]
    assert any("caching 16 px images:" in m and "images/s, ETA " in m for m in lines), lines
    assert any(m.startswith("built image cache") and "with 2 worker(s)" in m for m in lines), lines


def test_workers_and_chunk_are_checked(tmp_path):
    rec = make_records(tmp_path, n=2)
    with pytest.raises(ValueError, match="workers must be >= 1, not 0"):
        build_cache(rec, 16, tmp_path / "c", workers=0)
    with pytest.raises(ValueError, match="chunk must be >= 1, not 0"):
        build_cache(rec, 16, tmp_path / "c", chunk=0)
