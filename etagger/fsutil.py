"""File access through Beam's filesystems, so that local paths, ``gs://``, ``s3://`` and
``hdfs://`` all work: matching globs, atomic writes (a temporary name, then a rename),
streaming concatenation, and a local copy of a remote folder (a SavedModel).

On a local disk a rename is atomic. On an object store it is a copy and a delete, so a
reader may briefly see neither name, but never a half-written object under the final name.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import tempfile
import types
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

RAW = CompressionTypes.UNCOMPRESSED
COPY_BLOCK = 1 << 20


class NoMatchError(FileNotFoundError):
    """A glob that matches no file."""


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def basename(path: str) -> str:
    return FileSystems.split(path)[1]


def match(patterns: str | Sequence[str], allow_empty: bool = False) -> list[FileMetadata]:
    """The files matching any of ``patterns`` (globs or plain paths), sorted by path, each
    once; NoMatchError for a pattern that matches nothing unless ``allow_empty``."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: dict[str, FileMetadata] = {}
    for pattern, result in zip(patterns, FileSystems.match(patterns)):
        files = [m for m in result.metadata_list if not m.path.endswith("/")]
        if not files and not allow_empty:
            raise NoMatchError(f"no files match {pattern}")
        found.update((m.path, m) for m in files)
    return [found[p] for p in sorted(found)]


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def delete(paths: Iterable[str]) -> None:
    """Deletes the files (or local folders) that exist among ``paths``."""
    present = [p for p in paths if FileSystems.exists(p)]
    if present:
        FileSystems.delete(present)


def delete_tree(folder: str) -> None:
    """Deletes ``folder`` and everything under it (on an object store: every object under
    the prefix)."""
    if is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        delete(m.path for m in match(join(folder, "**"), allow_empty=True))


def open_read(path: str, compressed: bool = False) -> IO[bytes]:
    """A binary reader; ``compressed`` decompresses by file extension (.gz, .bz2, ...)."""
    return FileSystems.open(path, compression_type=CompressionTypes.AUTO if compressed else RAW)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def _temporary_name(path: str) -> str:
    folder, name = FileSystems.split(path)
    return join(folder, f".{name}.{uuid.uuid4().hex}.tmp")


def delete_temporaries(folder: str) -> None:
    """Deletes the temporary files that writes killed before their rename left in ``folder``."""
    delete(m.path for m in match(join(folder, ".*.tmp"), allow_empty=True))


class atomic_write:
    """Context manager: a file (text unless ``mode`` has "b") that appears at ``path`` only
    when the block succeeds; it is written under a temporary sibling name, then renamed."""

    def __init__(self, path: str | os.PathLike, mode: str = "w"):
        self.path = str(path)
        self.binary = "b" in mode

    def __enter__(self) -> IO:
        self.tmp = _temporary_name(self.path)
        raw = FileSystems.create(self.tmp, compression_type=RAW)
        self.file: IO = raw if self.binary else io.TextIOWrapper(raw, encoding="utf-8", newline="")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        self.file.close()
        if exc_type is None:
            FileSystems.rename([self.tmp], [self.path])
        else:
            delete([self.tmp])
        return False


def write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def concatenate(sources: Sequence[str], target: str) -> None:
    """Writes the files ``sources`` one after the other into ``target``, atomically, a block
    at a time: memory does not grow with the files."""
    with atomic_write(target, "wb") as out:
        for source in sources:
            with open_read(source) as f:
                shutil.copyfileobj(f, out, COPY_BLOCK)


def move(sources: Sequence[str], targets: Sequence[str]) -> None:
    """Renames each source to its target (replacing it), making local target folders."""
    for target in targets:
        if is_local(target):
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    if sources:
        FileSystems.rename(list(sources), list(targets))


def walk(folder: str) -> Iterator[FileMetadata]:
    """Every file under ``folder``."""
    yield from match(join(folder, "**"), allow_empty=True)


@functools.cache
def share_s3_clients() -> None:
    """Makes Beam's S3 filesystem reuse one boto3 client per configuration in this process.
    It builds a new boto3 session and client for every call, and loading the service
    model costs about 0.25 s each time; boto3 clients are thread-safe, sessions are not."""
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # no apache-beam[aws]: nothing to share
        return
    import threading

    import boto3

    lock = threading.Lock()
    clients: dict[tuple, object] = {}

    class SharedSession:
        def client(self, **kwargs):
            key = tuple(sorted(kwargs.items()))
            with lock:
                if key not in clients:
                    clients[key] = boto3.session.Session().client(**kwargs)
                return clients[key]

    # boto3_client reaches boto3 only as boto3.session.Session().
    boto3_client.boto3 = types.SimpleNamespace(session=types.SimpleNamespace(Session=SharedSession))


def local_folder(path: str) -> str:
    """``path`` itself when it is local; otherwise a new local temporary copy of the remote
    folder, for libraries such as TensorFlow that read local files."""
    if is_local(path):
        return path
    target = tempfile.mkdtemp(prefix="etagger-remote-")
    prefix = path.rstrip("/") + "/"
    for meta in walk(path):
        relative = meta.path[len(prefix) :]
        local = Path(target, relative)
        local.parent.mkdir(parents=True, exist_ok=True)
        with open_read(meta.path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_BLOCK)
    return target


def prepare_output(out: str, overwrite: bool, suffix: str) -> str:
    """A fresh hidden sibling of ``out``, ``.NAME`` + ``suffix``, for a run's work in progress
    (emptied of what a killed run left behind); refuses an existing ``out`` unless overwrite."""
    if exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    parent, name = out.rstrip("/").rsplit("/", 1) if "/" in out.rstrip("/") else (".", out)
    work = join(parent, f".{name}{suffix}")
    delete_tree(work)
    return work


def publish_folder(staging: str, target: str) -> None:
    """Moves the finished folder ``staging`` to ``target``, replacing it. On a local disk the
    folders are swapped, so a reader sees the old folder or the new one, never a mix, and a
    failed swap puts the old one back; on an object store the old objects are deleted, then
    the new ones moved in."""
    if not is_local(target):
        delete_tree(target)
        found = [m.path for m in walk(staging)]
        move(found, [join(target, p[len(staging.rstrip("/")) + 1 :]) for p in found])
        return
    parent, name = os.path.split(target.rstrip("/"))
    old = os.path.join(parent, f".{name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    try:
        if os.path.exists(target):
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        if os.path.exists(old) and not os.path.exists(target):  # put the old one back
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_folder(save, target: str | os.PathLike) -> Path:
    """Runs ``save(folder)`` into a temporary sibling of the local ``target`` (e.g. a
    SavedModel), then swaps it into place (``publish_folder``): a reader sees the old folder
    or the new one, never half of one."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        save(staging)
        publish_folder(str(staging), str(target))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
