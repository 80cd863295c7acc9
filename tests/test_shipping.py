"""bench.data.shipping: the image cache published to the run's storage and fetched by nodes that lack it.

The two-node test (a worker that sees neither the dataset nor the driver's cache) is in test_distributed.py.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.cache import build_cache, open_cache
from bench.data.shipping import FOLDER, CacheRef, fetch, publish
from test_cache import make_records


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def built(tmp_path):
    (tmp_path / "images").mkdir()
    rec = make_records(tmp_path / "images", n=40)
    cache = build_cache(rec, 24, tmp_path / "head-cache", workers=1)
    return rec, cache


def test_publish_then_fetch_into_an_empty_node_cache(built, tmp_path):
    rec, cache = built
    said = []
    ref = publish(cache, str(tmp_path / "storage"), say=said.append)
    assert ref.sha256 == _sha(cache.array_file) and ref.bytes == cache.array_file.stat().st_size
    assert (tmp_path / "storage" / FOLDER / cache.key / f"{cache.key}.json").is_file()
    node = tmp_path / "node-cache"
    fetch(ref.to_dict(), node)
    got = open_cache(rec, 24, node)
    assert got is not None and got.key == cache.key
    assert np.array_equal(got.open(), cache.open())
    assert not list(node.glob("*.tmp*"))
    # published again: the same bytes are not uploaded twice
    publish(cache, str(tmp_path / "storage"), say=said.append)
    assert "not uploaded again" in said[-1]


def test_a_changed_cache_in_storage_is_refused_and_nothing_is_left(built, tmp_path):
    rec, cache = built
    ref = publish(cache, str(tmp_path / "storage"))
    stored = tmp_path / "storage" / FOLDER / cache.key / f"{cache.key}.npy"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    node = tmp_path / "node-cache"
    with pytest.raises(RuntimeError, match="does not match its checksum"):
        fetch(ref, node)
    assert open_cache(rec, 24, node) is None and not list(node.glob("*.npy*"))


def test_a_cache_missing_from_storage_names_it(built, tmp_path):
    _, cache = built
    ref = publish(cache, str(tmp_path / "storage"))
    shutil.rmtree(tmp_path / "storage" / FOLDER)
    with pytest.raises(RuntimeError, match=f"image cache {cache.key} is not in .*storage"):
        fetch(ref, tmp_path / "node-cache")


def test_s3_storage_through_a_local_server(built, tmp_path, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    from _cluster import S3_ENV

    rec, cache = built
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
        for k, v in {**S3_ENV, "AWS_ENDPOINT_URL": url}.items():
            monkeypatch.setenv(k, v)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="results")
        ref = publish(cache, "s3://results/runs")
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=url, region_name="us-east-1")
                .list_objects_v2(Bucket="results")["Contents"]]
        assert f"runs/{FOLDER}/{cache.key}/{cache.key}.npy" in keys
        node = tmp_path / "node-cache"
        fetch(CacheRef(**ref.to_dict()), node)
        assert np.array_equal(open_cache(rec, 24, node).open(), cache.open())
    finally:
        server.stop()


def test_a_gpu_trial_never_builds_the_cache(built, tmp_path):
    from bench.trial import TrialData, _node_cache

    rec, cache = built
    data = TrialData(records=rec, manifest=None, cache_key=cache.key, cache_dir=str(tmp_path / "elsewhere"),
                     image_size=24, grid={}, run_meta={})
    with pytest.raises(RuntimeError, match="does not decode the dataset while holding a GPU: run with --storage"):
        _node_cache(data, gpu=0.5)
    assert not (tmp_path / "elsewhere").exists()
    got, source = _node_cache(data, gpu=0)  # a CPU trial may build it
    assert source == "built on this node" and got.key == cache.key
    ref = publish(cache, str(tmp_path / "storage"))
    data2 = TrialData(records=rec, manifest=None, cache_key=cache.key, cache_dir=str(tmp_path / "gpu-node"),
                      image_size=24, grid={}, run_meta={}, cache_ref=ref.to_dict())
    assert _node_cache(data2, gpu=1)[1] == "fetched from storage"
    assert _node_cache(data2, gpu=1)[1] == "local"
