"""The chunk encoding, its vectorized hashing, and chunk proofs as a verifier uses them."""

from __future__ import annotations

import hashlib
import itertools
import struct

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databourse.assets.commitment import (
    ChunkHasher,
    chunk_leaf,
    chunk_proof,
    chunk_root,
    encode_chunk,
    pack_leaves,
    unpack_leaves,
    verify_chunk,
)
from databourse.ledger.merkle import ProofError

Rows = list[list[str | None]]

cells = st.one_of(st.none(), st.text(max_size=6))


@st.composite
def tables(draw: st.DrawFn, min_rows: int = 0) -> Rows:
    width = draw(st.integers(1, 4))
    return draw(st.lists(st.lists(cells, min_size=width, max_size=width), min_size=min_rows))


def _columns(rows: Rows, width: int) -> list[pa.Array]:
    return [pa.array([r[c] for r in rows], pa.string()) for c in range(width)]


def _hash_in_batches(rows: Rows, chunk_rows: int, cuts: list[int]) -> list[bytes]:
    """Feed ``rows`` to a ChunkHasher in batches split at ``cuts``, as pyarrow would."""
    hasher = ChunkHasher(chunk_rows)
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(rows)), len(rows)]
    cols = _columns(rows, len(rows[0]))
    for lo, hi in itertools.pairwise(bounds):
        hasher.add([c.slice(lo, hi - lo) for c in cols])
    return hasher.finish()


def _verifier_leaves(rows: Rows, chunk_rows: int) -> list[bytes]:
    """What a third party computes from plain rows, with nothing but hashlib and struct."""
    leaves = []
    for i in range(0, len(rows), chunk_rows):
        chunk = rows[i : i + chunk_rows]
        out = struct.pack("<II", len(chunk), len(chunk[0]))
        for c in range(len(chunk[0])):
            data = [None if r[c] is None else r[c].encode() for r in chunk]  # type: ignore[union-attr]
            out += b"".join(struct.pack("<I", 0xFFFFFFFF if d is None else len(d)) for d in data)
            out += b"".join(d for d in data if d)
        leaves.append(hashlib.sha256(b"\x00" + out).digest())
    return leaves


def test_encoding_vector() -> None:
    """The documented example (docs/data-files.md), byte for byte."""
    got = encode_chunk([["a", None], ["", "中"]])
    assert got.hex() == (
        "02000000"
        "02000000"  # R = 2 rows, C = 2 columns
        "01000000"
        "00000000"
        "61"  # column 0: "a", "" (lengths, then bytes)
        "ffffffff"
        "03000000"
        "e4b8ad"  # column 1: null, "中"
    )
    assert chunk_leaf([["a", None], ["", "中"]]) == hashlib.sha256(b"\x00" + got).digest()


def test_null_and_empty_string_differ() -> None:
    assert chunk_leaf([[None]]) != chunk_leaf([[""]])
    assert chunk_leaf([["", None]]) != chunk_leaf([[None, ""]])


def test_ragged_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of cells"):
        encode_chunk([["a", "b"], ["c"]])


@settings(max_examples=300)
@given(st.lists(tables(), min_size=2, max_size=2, unique_by=lambda t: repr(t)))
def test_distinct_row_lists_encode_distinctly(pair: list[Rows]) -> None:
    a, b = pair
    assert encode_chunk(a) != encode_chunk(b)


@settings(max_examples=200)
@given(
    rows=tables(min_rows=1),
    chunk_rows=st.integers(1, 7),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_vectorized_hashing_equals_the_verifiers_encoding(
    rows: Rows, chunk_rows: int, cuts: list[int]
) -> None:
    """Whatever the batch boundaries, the Arrow path gives the verifier's leaves."""
    leaves = _hash_in_batches(rows, chunk_rows, cuts)
    assert leaves == _verifier_leaves(rows, chunk_rows)
    assert leaves == [chunk_leaf(rows[i : i + chunk_rows]) for i in range(0, len(rows), chunk_rows)]


def test_large_string_and_sliced_arrays_hash_alike() -> None:
    rows: Rows = [[f"值{i}", None if i % 3 else ""] for i in range(50)]
    hasher = ChunkHasher(8)
    cols = [pa.array([r[c] for r in rows], pa.large_string()) for c in range(2)]
    hasher.add([c.slice(0, 13) for c in cols])
    hasher.add([c.slice(13) for c in cols])
    assert hasher.finish() == _verifier_leaves(rows, 8)


def test_null_slots_that_span_bytes_are_not_hashed() -> None:
    """Arrow lets a null slot cover bytes; the encoding must ignore them."""
    offsets = pa.array([0, 1, 4, 5], pa.int32()).buffers()[1]
    validity = pa.array([True, False, True]).buffers()[1]
    arr = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, pa.py_buffer(b"axyzb")])
    hasher = ChunkHasher(10)
    hasher.add([arr])
    assert hasher.finish() == [chunk_leaf([["a"], [None], ["b"]])]


def test_every_chunk_proof_verifies_and_tampering_fails() -> None:
    rows: Rows = [[str(i), f"名字{i}", None if i % 5 == 0 else ""] for i in range(103)]
    leaves = _hash_in_batches(rows, 10, [17, 40])
    root = chunk_root(leaves)
    n = len(leaves)
    assert n == 11
    for i in range(n):
        chunk = rows[i * 10 : (i + 1) * 10]
        proof = chunk_proof(leaves, i)
        verify_chunk(chunk, i, n, proof, root)
        verify_chunk(chunk, i, n, [p.hex() for p in proof], root.hex())  # hex as served

    chunk, proof = rows[10:20], chunk_proof(leaves, 1)
    modified = [list(r) for r in chunk]
    modified[3][1] = "名字13 "
    reordered = [chunk[1], chunk[0], *chunk[2:]]
    null_for_empty = [list(r) for r in chunk]
    null_for_empty[1][2] = None
    moved = [*chunk[1:], rows[20]]  # a row slid across the chunk boundary
    short = chunk[:-1]
    for bad in (modified, reordered, null_for_empty, moved, short):
        with pytest.raises(ProofError):
            verify_chunk(bad, 1, n, proof, root)
    with pytest.raises(ProofError):
        verify_chunk(chunk, 2, n, proof, root)  # right rows, wrong position
    with pytest.raises(ProofError):
        verify_chunk(rows[20:30], 1, n, proof, root)  # another chunk's rows


def test_root_and_packing() -> None:
    assert chunk_root([]) == hashlib.sha256(b"").digest()
    one = chunk_leaf([["x"]])
    assert chunk_root([one]) == one
    leaves = [chunk_leaf([[str(i)]]) for i in range(5)]
    assert unpack_leaves(pack_leaves(leaves)) == leaves
    with pytest.raises(ValueError):
        unpack_leaves(b"\x00" * 33)
    with pytest.raises(ValueError):
        chunk_proof(leaves, 5)


def test_hasher_refuses_a_change_of_width() -> None:
    hasher = ChunkHasher(4)
    hasher.add([pa.array(["a"])])
    with pytest.raises(ValueError, match="columns"):
        hasher.add([pa.array(["a"]), pa.array(["b"])])
