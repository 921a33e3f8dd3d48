"""Local paths and ``s3://bucket/key`` behind one interface (boto3).

Why boto3: ``tf.io.gfile`` lost s3:// support and tensorflow-io stops at TF 2.16.
The endpoint comes from the standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
variables (MinIO, moto) and credentials from the usual AWS environment, which is
what the operator's Secret provides.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import os
import shutil

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """An object store or path could not be read or written; message says which."""


class UnsafeKey(StorageError):
    """A listed key that would land outside the folder it is staged into (see :func:`local_paths`);
    `flag` names the command-line flag of that input when the caller knows it."""

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag


@dataclasses.dataclass(frozen=True)
class Entry:
    """One file under a prefix: its full URI, its path relative to the prefix, its size."""

    uri: str
    relpath: str
    size: int


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Join URI/path components with '/', for s3:// and local alike."""
    if is_s3(base):
        out = base.rstrip("/")
        for p in parts:
            out += "/" + p.strip("/")
        return out
    return os.path.join(base, *parts)


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket in s3 URI")
    return bucket, key


def _client(endpoint: str | None = None):
    """A boto3 S3 client for `endpoint`, else the endpoint env vars (boto3 >= 1.28 reads them
    itself; passing them explicitly keeps older boto3 and odd setups working).

    Clients are reused per endpoint and credentials: building one costs tens of milliseconds,
    and pollers (the local runner reads progress.json every half second) call this often.
    """
    env = os.environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    return _cached_client(endpoint, env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"),
                          env.get("AWS_SESSION_TOKEN"), env.get("AWS_DEFAULT_REGION"))


@functools.lru_cache(maxsize=8)
def _cached_client(endpoint: str | None, key_id: str | None, secret: str | None, token: str | None, region: str | None):
    """One client per distinct (endpoint, credentials, region); boto3 clients are thread-safe."""
    import boto3  # noqa: PLC0415 - only needed for s3:// URIs

    return boto3.client("s3", endpoint_url=endpoint)


def _s3_errors():
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    return (BotoCoreError, ClientError)


def list_files(prefix: str) -> list[Entry]:
    """Every file under ``prefix`` (recursively), sorted by relative path."""
    if is_s3(prefix):
        bucket, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key else ""
        out = []
        try:
            pages = _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(key):]
                    if rel and not rel.endswith("/"):
                        out.append(Entry(f"s3://{bucket}/{obj['Key']}", rel, int(obj["Size"])))
        except _s3_errors() as exc:
            raise StorageError(f"{prefix}: cannot list ({exc})") from exc
        return sorted(out, key=lambda e: e.relpath)
    if not os.path.isdir(prefix):
        return []
    out = []
    for root, _dirs, files in os.walk(prefix):
        for name in files:
            path = os.path.join(root, name)
            out.append(Entry(path, os.path.relpath(path, prefix), os.path.getsize(path)))
    return sorted(out, key=lambda e: e.relpath)


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().head_object(Bucket=bucket, Key=key)
            return True
        except _s3_errors():
            return False
    return os.path.exists(uri)


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except _s3_errors() as exc:
            raise StorageError(f"{uri}: cannot read ({exc})") from exc
    try:
        with open(uri, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read ({exc.strerror})") from exc


def read_if_exists(uri: str, endpoint: str | None = None) -> bytes | None:
    """The object or file, or None when there is none: one request, for pollers (not exists() then read)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return _client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
        except _s3_errors() as exc:
            if _s3_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StorageError(f"{uri}: cannot read ({exc})") from exc
    try:
        with open(uri, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read ({exc.strerror})") from exc


@dataclasses.dataclass(frozen=True)
class Versioned:
    """An object with its ETag and its age (seconds since it was last written, on the store's own clock)."""

    data: bytes
    etag: str
    age_seconds: float


def _s3_code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


def read_versioned(uri: str) -> Versioned | None:
    """An s3:// object with its ETag and age, or None when there is none.

    The age compares the object's Last-Modified with the Date of the same response, both
    the store's clock, so it does not depend on this machine's clock being right.
    """
    bucket, key = split_s3(uri)
    try:
        resp = _client().get_object(Bucket=bucket, Key=key)
        data = resp["Body"].read()
    except _s3_errors() as exc:
        if _s3_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise StorageError(f"{uri}: cannot read ({exc})") from exc
    date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    import email.utils  # noqa: PLC0415  # here, not at the top: 14 ms (socket, selectors) that every trainer command paid

    now = email.utils.parsedate_to_datetime(date) if date else datetime.datetime.now(datetime.timezone.utc)
    return Versioned(data, resp["ETag"], max((now - resp["LastModified"]).total_seconds(), 0.0))


def write_if(uri: str, data: bytes, *, etag: str | None) -> str | None:
    """PUT an s3:// object only if its ETag is still `etag` (None: only if there is no such object);
    returns the new ETag, or None when the condition did not hold (someone else wrote it first).
    Conditional writes are what AWS S3 and MinIO do since 2024."""
    bucket, key = split_s3(uri)
    condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
    try:
        return _client().put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"]
    except _s3_errors() as exc:
        if _s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey"):
            return None
        raise StorageError(f"{uri}: cannot write ({exc})") from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object; local writes go through a temp file + rename so a reader
    (the operator polling progress.json) never sees half a file."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().put_object(Bucket=bucket, Key=key, Body=data)
        except _s3_errors() as exc:
            raise StorageError(f"{uri}: cannot write ({exc})") from exc
        return
    os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    tmp = f"{uri}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, uri)


def delete(uri: str) -> None:
    """Remove an object or file; one that is already gone is not an error."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().delete_object(Bucket=bucket, Key=key)
        except _s3_errors() as exc:
            raise StorageError(f"{uri}: cannot delete ({exc})") from exc
        return
    try:
        os.remove(uri)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"{uri}: cannot delete ({exc.strerror})") from exc


def upload_file(local_path: str, uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().upload_file(local_path, bucket, key)
        except _s3_errors() + (OSError,) as exc:
            raise StorageError(f"{uri}: cannot upload {local_path} ({exc})") from exc
        return
    if os.path.abspath(local_path) == os.path.abspath(uri):
        return
    os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    shutil.copyfile(local_path, uri)


def download_file(uri: str, local_path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(local_path)), exist_ok=True)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        tmp = f"{local_path}.part"
        try:
            _client().download_file(bucket, key, tmp)
        except _s3_errors() as exc:
            raise StorageError(f"{uri}: cannot download ({exc})") from exc
        os.replace(tmp, local_path)
        return
    if os.path.abspath(local_path) != os.path.abspath(uri):
        shutil.copyfile(uri, local_path)


def local_paths(dest: str, entries: list[Entry], *, flag: str | None = None) -> list[str]:
    """The local path under ``dest`` of each listed entry, in order: the one place where a listed
    key (or relative path) becomes a file name.

    A key is its bucket's to choose: ``corpus//etc/x`` lists as relpath ``/etc/x``, which
    ``os.path.join`` turns into ``/etc/x``; ``corpus/a/../../x`` climbs out of ``dest``. Every entry
    must map to a path strictly inside ``dest``: relative, no empty, ``.`` or ``..`` segment, and
    not through a symlink that leaves ``dest``. Backslashes are ordinary characters on POSIX and are
    kept. The whole list is checked before the caller writes anything.

    Why refuse (UnsafeKey, exit 2) rather than skip with a warning: such a key is either an attack or
    a dataset written by a broken tool, and training on what is left after a silent skip gives
    results that differ from what the user asked for, noticed only by whoever reads the log.
    """
    root = os.path.realpath(dest)
    out = []
    for entry in entries:
        parts = entry.relpath.split("/")
        bad = not entry.relpath or "\0" in entry.relpath or any(p in ("", ".", "..") for p in parts)
        target = os.path.join(dest, *parts)
        if not bad:
            resolved = os.path.realpath(target)
            bad = resolved == root or os.path.commonpath([root, resolved]) != root
        if bad:
            raise UnsafeKey(f"{entry.uri}: its path {entry.relpath!r} does not stay inside {dest} (absolute, "
                            "empty, or with a '.' or '..' segment); refusing it before anything is written", flag)
        out.append(target)
    return out


def check_readable_prefix(prefix: str) -> list[Entry]:
    """The files under ``prefix``, or StorageError explaining why there are none
    (missing bucket, bad credentials, empty prefix, missing directory)."""
    if is_s3(prefix):
        bucket, _ = split_s3(prefix)
        try:
            _client().head_bucket(Bucket=bucket)
        except _s3_errors() as exc:
            raise StorageError(f"{prefix}: bucket {bucket!r} is not reachable ({exc})") from exc
        entries = list_files(prefix)
        if not entries:
            raise StorageError(f"{prefix}: no objects under this prefix")
        return entries
    if not os.path.isdir(prefix):
        raise StorageError(f"{prefix}: directory does not exist")
    if not os.access(prefix, os.R_OK | os.X_OK):
        raise StorageError(f"{prefix}: directory is not readable")
    entries = list_files(prefix)
    if not entries:
        raise StorageError(f"{prefix}: directory is empty")
    return entries


def sync(source: str, dest: str, *, progress=None) -> dict[str, int]:
    """Copy every file under ``source`` (s3:// prefix or local dir) into local ``dest``,
    skipping files already there with the same size (so a restarted init container
    resumes). ``progress(done, total, copied_bytes)`` is called after each file. A key that
    would land outside ``dest`` fails the whole sync before anything is copied (UnsafeKey)."""
    entries = check_readable_prefix(source)
    targets = local_paths(dest, entries, flag="source")
    copied = skipped = copied_bytes = 0
    for i, (entry, target) in enumerate(zip(entries, targets), 1):
        if os.path.isfile(target) and os.path.getsize(target) == entry.size:
            skipped += 1
        else:
            download_file(entry.uri, target)
            copied += 1
            copied_bytes += entry.size
        if progress is not None:
            progress(i, len(entries), copied_bytes)
    return {"files": len(entries), "copied": copied, "skipped": skipped, "bytes": copied_bytes}

