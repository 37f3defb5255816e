"""Content commitment of a data file: its SHA-256 plus a Merkle root over row chunks.

The SHA-256 of the file's bytes proves the whole file; the Merkle root (RFC 9162 §2.1) over
fixed-size chunks of rows lets the exchange later prove that *some* rows (one chunk) belong
to the registered file without handing over the rest. Pure: no I/O.

Chunk encoding (what a third party re-implements; ``docs/data-files.md``). A chunk of R rows
of C cells each, every cell text or null, is the bytes::

    chunk  = u32(R) ‖ u32(C) ‖ column_0 ‖ … ‖ column_{C-1}
    column = u32(len_0) ‖ … ‖ u32(len_{R-1}) ‖ bytes_0 ‖ … ‖ bytes_{R-1}

where ``u32`` is unsigned 32-bit little-endian, ``bytes_i`` is the UTF-8 of the cell's text
and ``len_i`` its length, and a null cell has ``len_i = 0xFFFFFFFF`` and no bytes (so null and
the empty string differ). Column-major with the lengths ahead of the bytes is unambiguous
(R and C fix how many lengths follow, the lengths fix how many bytes) and is Arrow's own
layout, so a chunk is hashed from Arrow buffers without a Python loop over cells. The leaf is
RFC 9162's ``SHA-256(0x00 ‖ chunk)``; chunk i holds rows [i·chunk_rows, (i+1)·chunk_rows).
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from databourse.ledger.merkle import (
    HASH_SIZE,
    inclusion_proof,
    leaf_hash,
    root_from_leaves,
    verify_inclusion,
)

NULL_LENGTH = 0xFFFFFFFF
MAX_CELL_BYTES = NULL_LENGTH - 1
_LITTLE = sys.byteorder == "little"

Rows = Sequence[Sequence[str | None]]


def encode_chunk(rows: Rows) -> bytes:
    """The chunk bytes of ``rows`` (reference implementation, one cell at a time)."""
    width = len(rows[0]) if rows else 0
    if any(len(r) != width for r in rows):
        raise ValueError("every row of a chunk must have the same number of cells")
    out = [struct.pack("<II", len(rows), width)]
    for c in range(width):
        cells = [None if (v := r[c]) is None else v.encode("utf-8") for r in rows]
        lengths = [NULL_LENGTH if b is None else len(b) for b in cells]
        if any(n > MAX_CELL_BYTES for n in lengths if n != NULL_LENGTH):
            raise ValueError(f"a cell is longer than {MAX_CELL_BYTES} bytes")
        out.append(struct.pack(f"<{len(lengths)}I", *lengths))
        out.extend(b for b in cells if b)
    return b"".join(out)


def chunk_leaf(rows: Rows) -> bytes:
    """The Merkle leaf hash of a chunk given as plain rows (what a verifier holds)."""
    return leaf_hash(encode_chunk(rows))


def chunk_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over the chunk leaf hashes (RFC 9162 §2.1.1); SHA-256("") when there are none."""
    return root_from_leaves(leaves)


def pack_leaves(leaves: Sequence[bytes]) -> bytes:
    """Leaf hashes concatenated: 32 bytes per chunk, compact enough to store with the file."""
    return b"".join(leaves)


def unpack_leaves(packed: bytes) -> list[bytes]:
    if len(packed) % HASH_SIZE:
        raise ValueError(f"packed leaves must be a multiple of {HASH_SIZE} bytes")
    return [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)]


def chunk_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Inclusion proof (RFC 9162 §2.1.3.1 audit path, leaf side first) of chunk ``index``.

    Each perfect node the proof needs is hashed from the leaves it covers: the nodes of one
    path cover disjoint ranges, so this is O(n) hashing with no tree kept in memory.
    """
    if not 0 <= index < len(leaves):
        raise ValueError(f"chunk {index} is outside a file of {len(leaves)} chunks")

    def get_node(level: int, i: int) -> bytes:
        return root_from_leaves(leaves[i << level : (i + 1) << level])

    return inclusion_proof(index, len(leaves), get_node)


def _as_hash(value: bytes | str) -> bytes:
    return bytes.fromhex(value) if isinstance(value, str) else value


def verify_chunk(
    rows: Rows,
    index: int,
    chunk_count: int,
    proof: Sequence[bytes | str],
    root: bytes | str,
) -> None:
    """Raise ``ProofError`` unless ``rows`` are chunk ``index`` of the committed file.

    ``proof`` and ``root`` may be raw or hex. The rows' order, every cell and the null/empty
    distinction are all bound by the leaf, the position by the proof.
    """
    verify_inclusion(
        chunk_leaf(rows), index, chunk_count, [_as_hash(p) for p in proof], _as_hash(root)
    )


class _Column:
    """One string column of a batch, as the buffers the chunk encoding hashes."""

    def __init__(self, arr: pa.Array) -> None:
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = arr.cast(pa.string())
        lengths = pc.binary_length(arr).cast(pa.uint32())
        if arr.null_count:
            lengths = pc.fill_null(lengths, pa.scalar(NULL_LENGTH, pa.uint32()))
            spanned = _offset(arr, len(arr)) - _offset(arr, 0)
            if (pc.sum(pc.binary_length(arr)).as_py() or 0) != spanned:
                # Arrow allows null slots to span bytes; rebuild so they span none.
                arr = pc.if_else(pc.is_valid(arr), arr, pa.scalar("", arr.type))
        self.lengths = memoryview(_le_u32(lengths))
        self.offsets = _offsets(arr)
        self.base = arr.offset
        data = arr.buffers()[2]
        self.data = memoryview(data) if data is not None else memoryview(b"")


def _offsets(arr: pa.Array) -> memoryview:
    """The raw offsets buffer as integers (index it with ``arr.offset + row``)."""
    return memoryview(arr.buffers()[1]).cast("q" if arr.type == pa.large_string() else "i")


def _offset(arr: pa.Array, row: int) -> int:
    return int(_offsets(arr)[arr.offset + row])


def _le_u32(lengths: pa.Array) -> bytes | pa.Buffer:
    """The uint32 values as little-endian bytes (zero-copy on little-endian machines)."""
    buf = lengths.buffers()[1]
    start, stop = lengths.offset * 4, (lengths.offset + len(lengths)) * 4
    if _LITTLE:
        return buf.slice(start, stop - start)
    swapped = array("I", buf.to_pybytes()[start:stop])
    swapped.byteswap()
    return swapped.tobytes()


class ChunkHasher:
    """Leaf hashes of a stream of column batches, ``chunk_rows`` rows per leaf.

    Batches need not align with chunks: a chunk may span several batches, so the unfinished
    tail of one batch is kept (as buffer views, not copies) until the next completes it.
    """

    def __init__(self, chunk_rows: int) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self.chunk_rows = chunk_rows
        self.leaves: list[bytes] = []
        self.rows = 0
        self._width: int | None = None
        self._pending: list[tuple[list[_Column], int, int]] = []
        self._pending_rows = 0

    def add(self, columns: Sequence[pa.Array]) -> None:
        """Feed the next rows, one text (or text-castable) array per column."""
        if self._width is None:
            self._width = len(columns)
        elif len(columns) != self._width:
            raise ValueError(f"batch has {len(columns)} columns, earlier ones {self._width}")
        n = len(columns[0]) if columns else 0
        if n == 0:
            return
        cols = [_Column(a) for a in columns]
        self.rows += n
        pos = 0
        if self._pending_rows:
            pos = min(self.chunk_rows - self._pending_rows, n)
            self._pending.append((cols, 0, pos))
            self._pending_rows += pos
            if self._pending_rows == self.chunk_rows:
                self._emit(self._pending)
                self._pending, self._pending_rows = [], 0
        while n - pos >= self.chunk_rows:
            self._emit([(cols, pos, pos + self.chunk_rows)])
            pos += self.chunk_rows
        if pos < n:
            self._pending, self._pending_rows = [(cols, pos, n)], n - pos

    def _emit(self, pieces: list[tuple[list[_Column], int, int]]) -> None:
        rows = sum(stop - start for _, start, stop in pieces)
        width = self._width or 0
        h = hashlib.sha256(b"\x00" + struct.pack("<II", rows, width))  # RFC 9162 leaf prefix
        for c in range(width):
            for cols, start, stop in pieces:
                h.update(cols[c].lengths[start * 4 : stop * 4])
            for cols, start, stop in pieces:
                col = cols[c]
                h.update(col.data[col.offsets[col.base + start] : col.offsets[col.base + stop]])
        self.leaves.append(h.digest())

    def finish(self) -> list[bytes]:
        """Hash the last, possibly shorter, chunk; the leaf hashes in order."""
        if self._pending_rows:
            self._emit(self._pending)
            self._pending, self._pending_rows = [], 0
        return self.leaves
