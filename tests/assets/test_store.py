"""The object store on a local directory and in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from databourse.assets.store import ObjectStore


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield ObjectStore((tmp_path / "objects").as_uri())
    else:
        s = ObjectStore(f"memory://test-{uuid.uuid4().hex}")
        yield s
        if s.fs.exists(s.root):
            s.fs.rm(s.root, recursive=True)


def _write(store: ObjectStore, data: bytes) -> str:
    key, sink = store.create_temp()
    with sink:
        sink.write(data)
    return key


def test_temp_object_then_promote(store: ObjectStore) -> None:
    key = _write(store, b"hello, \xe4\xb8\xad")
    assert key.startswith("tmp/")
    assert store.exists(key) and store.size(key) == 10

    store.promote(key, "assets/a1/v1.csv")
    assert not store.exists(key)
    assert store.size("assets/a1/v1.csv") == 10
    with store.open("assets/a1/v1.csv") as f:
        assert f.read(5) == b"hello"
        f.seek(7)
        assert f.read() == b"\xe4\xb8\xad"


def test_temp_keys_are_distinct(store: ObjectStore) -> None:
    assert _write(store, b"a") != _write(store, b"a")


def test_delete_is_idempotent(store: ObjectStore) -> None:
    key = _write(store, b"x")
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # cleanup may run twice
    with pytest.raises(FileNotFoundError):
        store.size(key)
    with pytest.raises(FileNotFoundError):
        store.open(key)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b"])
def test_keys_cannot_escape_the_root(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.open(key)


def test_local_files_land_under_the_root(tmp_path: Path) -> None:
    store = ObjectStore((tmp_path / "objects").as_uri())
    key = _write(store, b"abc")
    store.promote(key, "x/y/z.parquet")
    assert (tmp_path / "objects" / "x" / "y" / "z.parquet").read_bytes() == b"abc"
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_two_stores_on_one_url_share_objects(tmp_path: Path) -> None:
    """What fsspec is for: another process (here another instance) sees the same files."""
    url = (tmp_path / "shared").as_uri()
    key = _write(ObjectStore(url), b"shared")
    assert ObjectStore(url).size(key) == 6
