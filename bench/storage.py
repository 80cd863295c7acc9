"""The run's storage (``bench run --storage``) as a pyarrow filesystem, for Ray Tune and the image cache's shipping.

Kept apart from :mod:`bench.tuner` so that :mod:`bench.data.shipping`, which trials import, does not import the
tuner (the import-cycle test checks it).
"""

from __future__ import annotations

import os


def s3_endpoint() -> str | None:
    """The custom S3 endpoint of this process's environment (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def storage_filesystem(storage: str, endpoint: str | None = None):
    """A pyarrow filesystem for ``s3://`` storage served at a custom endpoint (``endpoint``, else
    :func:`s3_endpoint`: e.g. MinIO or a local test server), else None (Ray resolves the URI itself)."""
    endpoint = endpoint or s3_endpoint()
    if not storage.startswith("s3://") or not endpoint:
        return None
    import pyarrow.fs as pafs

    scheme, _, host = endpoint.rstrip("/").partition("://")
    return pafs.S3FileSystem(endpoint_override=host or scheme, scheme=scheme if host else "https",
                             region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
