"""The image cache: one build per (dataset, size), bad images listed (never zeros), atomic builds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

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


def test_bad_images_are_listed_and_excluded_or_refused(tmp_path):
    rec = make_records(tmp_path, extra=[
        ("empty.png", lambda p: p.write_bytes(b"")),
        ("corrupt.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")),
        ("truncated.png", lambda p: p.write_bytes((tmp_path / "img0.png").read_bytes()[:60])),
        ("sixteen.png", lambda p: Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(p)),
    ])
    rec.paths[1] = str(tmp_path / "missing.png")
    cache = build_cache(rec, 16, tmp_path / "c")
    assert set(cache.bad) == {"img1.png", "empty.png", "corrupt.png", "truncated.png"}
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


def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path):
    rec = make_records(tmp_path, n=300)

    def boom(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(rec, 16, tmp_path / "c", progress=boom)
    assert open_cache(rec, 16, tmp_path / "c") is None
    assert not list((tmp_path / "c").glob("*.npy")) and not list((tmp_path / "c").glob("*.json"))
    assert build_cache(rec, 16, tmp_path / "c").open().shape == (300, 16, 16)
