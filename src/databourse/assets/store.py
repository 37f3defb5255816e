"""The object store that holds data files: a small adapter over fsspec.

Why fsspec: the application is stateless and runs as many processes (API workers, background
jobs) that must all see the same files. fsspec gives one interface over a local directory
(``file:///abs/dir``, the embedded default), memory (``memory://name``, tests) and object
stores (``s3://bucket/prefix`` in production), so the code that writes and reads data files
does not change with the deployment.

Keys are relative, ``/``-separated paths. A new object is first written under ``tmp/`` and
``promote``\\ d to its final key once it has been validated, so a reader never sees a
half-written or refused file under a real key.
"""

from __future__ import annotations

import contextlib
import posixpath
import uuid
from typing import BinaryIO, cast

import fsspec
from fsspec.implementations.local import LocalFileSystem

TEMP_PREFIX = "tmp/"


class ObjectStore:
    """Objects under one fsspec URL root, addressed by relative keys."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self._local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def path(self, key: str) -> str:
        """The backend path of ``key``; refuses keys that could escape the root."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid object key {key!r}")
        return f"{self.root}/{key}"

    def _parent_dirs(self, key: str) -> None:
        """Local files need their directory; object stores have no directories."""
        if self._local:
            self.fs.makedirs(posixpath.dirname(self.path(key)), exist_ok=True)

    def create_temp(self, suffix: str = "") -> tuple[str, BinaryIO]:
        """A new temporary object open for binary writing, and its key (under ``tmp/``).

        The caller closes the file, then either ``promote``\\ s or ``delete``\\ s the key.
        """
        key = f"{TEMP_PREFIX}{uuid.uuid4().hex}{suffix}"
        self._parent_dirs(key)
        return key, cast(BinaryIO, self.fs.open(self.path(key), "wb"))

    def promote(self, temp_key: str, final_key: str) -> None:
        """Move a temporary object to its final key.

        Atomic on a local file system (a rename within one directory tree) and in memory;
        on S3 it is a copy then a delete, so readers must only look up final keys that the
        database already records.
        """
        self._parent_dirs(final_key)
        self.fs.mv(self.path(temp_key), self.path(final_key))

    def open(self, key: str) -> BinaryIO:
        """The object opened for reading: a seekable binary file (close it when done)."""
        return cast(BinaryIO, self.fs.open(self.path(key), "rb"))

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error (cleanup may run twice)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def size(self, key: str) -> int:
        """Size in bytes; ``FileNotFoundError`` if the object does not exist."""
        return int(self.fs.size(self.path(key)))
