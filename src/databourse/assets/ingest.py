"""Receiving a data file (CSV or Parquet) and describing it, streaming, within limits.

Two phases, so that no file is ever held in memory:

1. ``receive`` copies the upload into a temporary object of the store in fixed-size blocks,
   computing its SHA-256 and size, refusing it as soon as it passes ``max_bytes``, and
   checking as it goes whether the bytes are UTF-8.
2. ``describe`` parses the stored object (pyarrow's streaming CSV reader, or Parquet batch
   by batch) into the file's facts: schema, row count, sample and content commitment.

Every refusal is one of the domain's errors (``databourse.assets.errors``). Once the
temporary object exists the caller owns it: on any exception it must ``store.delete`` the
key, on success ``store.promote`` it. ``ingest`` runs both phases and deletes on failure.
``docs/data-files.md`` states the rules for merchants and verifiers.
"""

from __future__ import annotations

import codecs
import hashlib
import struct
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa

from databourse.assets import tabular
from databourse.assets.commitment import ChunkHasher, chunk_root, pack_leaves
from databourse.assets.errors import (
    FileTooLarge,
    MalformedFile,
    UnsupportedEncoding,
    UnsupportedFormat,
)
from databourse.assets.store import ObjectStore

if TYPE_CHECKING:
    from databourse.settings import Settings

BLOCK_BYTES = 1 << 20  # receive block: large enough that per-block Python work vanishes
LOGICAL_TYPES = ("string", "integer", "number", "boolean", "date", "timestamp", "binary")
_SNIFF = {  # what an upload that is neither CSV nor Parquet often is
    b"PK\x03\x04": "a ZIP archive or an Excel workbook; export the sheet as CSV",
    b"\x1f\x8b": "gzip-compressed; upload the uncompressed file",
    b"\xd0\xcf\x11\xe0": "a legacy Excel workbook; export the sheet as CSV",
}


@dataclass(frozen=True)
class IngestLimits:
    max_bytes: int  # raw file size -> FileTooLarge (413)
    max_decoded_bytes: int  # Parquet: decoded size (metadata, then while reading)
    max_columns: int
    chunk_rows: int = 1024  # rows per commitment chunk
    sample_rows: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(
            max_bytes=settings.upload_max_bytes,
            max_decoded_bytes=settings.upload_max_decoded_bytes,
            max_columns=settings.upload_max_columns,
            chunk_rows=settings.commitment_chunk_rows,
            sample_rows=settings.sample_rows,
        )


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    type: str  # one of LOGICAL_TYPES
    nullable: bool  # CSV: it holds an empty cell; Parquet: the schema allows null
    null_count: int


@dataclass(frozen=True)
class FileFacts:
    format: str  # "csv" | "parquet"
    encoding: str | None  # CSV: "utf-8" or "gb18030"; None for Parquet
    byte_size: int
    sha256: str  # hex SHA-256 of the file's exact bytes
    row_count: int
    columns: tuple[ColumnFacts, ...]
    chunk_rows: int
    chunk_count: int
    chunk_root: str  # hex RFC 9162 Merkle root over the chunk leaves (commitment.py)
    sample: tuple[tuple[str | None, ...], ...]  # first rows, cells as text
    chunk_leaves: bytes = field(default=b"", repr=False)  # the leaf hashes, 32 bytes each


@dataclass(frozen=True)
class Received:
    """What phase 1 learnt while copying the bytes."""

    byte_size: int
    sha256: str
    head: bytes  # the first bytes, to recognise the format
    utf8_error_at: int | None  # offset of the first byte that breaks UTF-8; None if valid
    utf8_truncated: bool = False  # valid UTF-8 except that it ends inside a character
    ascii: bool = False  # every byte < 0x80 (then UTF-8 and GB18030 read it alike)


def format_of(filename: str) -> str:
    """``csv`` or ``parquet`` from a file name's extension."""
    ext = filename.rpartition(".")[2].lower() if "." in filename else ""
    fmt = {"csv": "csv", "parquet": "parquet", "pq": "parquet"}.get(ext)
    if fmt is None:
        raise UnsupportedFormat(f"{filename!r} is not a .csv or .parquet file", filename=filename)
    return fmt


# ---------------------------------------------------------------- phase 1: receive


class _Utf8Check:
    """Incremental UTF-8 validation over blocks with Arrow's (SIMD) validator.

    A character may straddle two blocks: the incomplete tail of a block is carried into the
    next. Python's codec finds the exact offset once a block is known to be invalid.
    """

    def __init__(self) -> None:
        self.error_at: int | None = None
        self.truncated = False
        self._carry = b""
        self._pos = 0  # offset of the first byte of self._carry

    def feed(self, block: bytes) -> None:
        if self.error_at is not None:
            return
        data = self._carry + block if self._carry else block
        cut = _complete_prefix(data)
        if not _valid_utf8(data, cut):
            try:
                data[:cut].decode("utf-8")
            except UnicodeDecodeError as exc:
                self.error_at = self._pos + exc.start
            return
        self._carry, self._pos = data[cut:], self._pos + cut

    def finish(self) -> None:
        if self.error_at is None and self._carry:
            try:
                self._carry.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.error_at = self._pos + exc.start
                self.truncated = exc.reason == "unexpected end of data"


def _complete_prefix(data: bytes) -> int:
    """Length of ``data`` without a trailing, incomplete multi-byte sequence."""
    for i in range(len(data) - 1, max(len(data) - 4, -1), -1):
        b = data[i]
        if b & 0xC0 == 0x80:  # continuation byte: look further back for the lead
            continue
        need = 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 1
        return i if i + need > len(data) else len(data)
    return len(data)


def _valid_utf8(data: bytes, length: int) -> bool:
    offsets = pa.py_buffer(struct.pack("<ii", 0, length))
    arr = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def receive(
    source: BinaryIO, sink: BinaryIO, limits: IngestLimits, *, expected_sha256: str | None = None
) -> Received:
    """Copy ``source`` into ``sink`` block by block; refuse it once it passes ``max_bytes``.

    ``expected_sha256`` (hex, optional) is the digest the uploader computed: a mismatch means
    the upload was cut short or altered on the way, which a CSV's bytes alone cannot show.
    """
    digest = hashlib.sha256()
    utf8 = _Utf8Check()
    size, head, ascii = 0, b"", True

    def keep(block: bytes) -> None:  # hashlib and file writes release the GIL
        digest.update(block)
        sink.write(block)

    with ThreadPoolExecutor(1, thread_name_prefix="receive") as worker:
        kept: Future[None] | None = None
        while block := source.read(BLOCK_BYTES):
            size += len(block)
            if size > limits.max_bytes:
                raise FileTooLarge(
                    f"The file is larger than {limits.max_bytes} bytes, the most the exchange "
                    "accepts.",
                    max_bytes=limits.max_bytes,
                )
            if len(head) < 8:
                head += block[: 8 - len(head)]
            if kept is not None:
                kept.result()  # one block in flight: memory stays at two blocks
            kept = worker.submit(keep, block)
            utf8.feed(block)
            ascii = ascii and block.isascii()
        if kept is not None:
            kept.result()
    utf8.finish()
    sha = digest.hexdigest()
    if expected_sha256 is not None and expected_sha256.lower() != sha:
        raise MalformedFile(
            f"The file's SHA-256 is {sha}, not {expected_sha256.lower()} as declared: the "
            "upload was truncated or altered on the way.",
            sha256=sha,
        )
    return Received(size, sha, head, utf8.error_at, utf8.truncated, ascii)


# ---------------------------------------------------------------- phase 2: describe


def describe(
    store: ObjectStore,
    key: str,
    fmt: str,
    received: Received,
    limits: IngestLimits,
    encoding: str | None = None,
) -> FileFacts:
    """The facts of the stored object ``key``; ``encoding`` is the uploader's declaration."""
    if fmt not in ("csv", "parquet"):
        raise UnsupportedFormat(f"The format {fmt!r} is not accepted; use CSV or Parquet.")
    if received.byte_size == 0:
        raise MalformedFile("The file is empty.")
    for magic, what in _SNIFF.items():
        if received.head.startswith(magic):
            raise UnsupportedFormat(f"The file is {what}.")
    enc = None
    with store.open(key) as f:
        try:
            if fmt == "csv":
                if received.head.startswith(b"PAR1"):
                    raise MalformedFile("The file is a Parquet file, not CSV.")
                enc = _csv_encoding(store, key, received, encoding)
                table = tabular.csv_table(f, enc, limits.max_columns, received.utf8_error_at)
            else:
                table = tabular.parquet_table(f, limits.max_columns, limits.max_decoded_bytes)
            profile = _Profile(table, limits)
            try:
                for columns in table.batches:
                    profile.add(columns)
                leaves = profile.finish()
            finally:
                profile.close()
        except tabular.RaggedRow as exc:
            raise tabular.locate_ragged_row(exc, store, key, enc or "utf-8") from None
    return FileFacts(
        format=fmt,
        encoding=enc,
        byte_size=received.byte_size,
        sha256=received.sha256,
        row_count=profile.hasher.rows,
        columns=profile.columns(),
        chunk_rows=limits.chunk_rows,
        chunk_count=len(leaves),
        chunk_root=chunk_root(leaves).hex(),
        sample=tuple(profile.sample),
        chunk_leaves=pack_leaves(leaves),
    )


def ingest(
    store: ObjectStore,
    source: BinaryIO,
    fmt: str,
    limits: IngestLimits,
    *,
    encoding: str | None = None,
    expected_sha256: str | None = None,
) -> tuple[str, FileFacts]:
    """Both phases: the temporary key (for the caller to ``promote``) and the facts.

    On any failure the temporary object is deleted before the error propagates.
    """
    key, sink = store.create_temp()
    try:
        with sink:
            received = receive(source, sink, limits, expected_sha256=expected_sha256)
        return key, describe(store, key, fmt, received, limits, encoding)
    except BaseException:
        store.delete(key)
        raise


def read_chunk(
    store: ObjectStore, key: str, fmt: str, encoding: str | None, chunk_rows: int, index: int
) -> list[list[str | None]]:
    """Rows of chunk ``index`` of a stored, already described file, cells as text."""
    start, stop = index * chunk_rows, (index + 1) * chunk_rows
    rows: list[list[str | None]] = []
    with store.open(key) as f:
        for offset, columns in tabular.stored_batches(f, fmt, encoding, start):
            lo, hi = max(start - offset, 0), min(stop - offset, len(columns[0]))
            if hi > lo:
                cells = [c.slice(lo, hi - lo).to_pylist() for c in columns]
                rows.extend(list(r) for r in zip(*cells, strict=True))
            if offset + len(columns[0]) >= stop:
                break
    if index < 0 or not rows:
        raise IndexError(f"the file has no chunk {index}")
    return rows


def chunk_leaves(
    store: ObjectStore, key: str, fmt: str, encoding: str | None, chunk_rows: int
) -> list[bytes]:
    """Every chunk's leaf hash, recomputed from a stored, already described file."""
    hasher = ChunkHasher(chunk_rows)
    with store.open(key) as f:
        for _, columns in tabular.stored_batches(f, fmt, encoding, 0):
            hasher.add(columns)
    return hasher.finish()


def schema_drift(old: Sequence[ColumnFacts], new: Sequence[ColumnFacts]) -> list[str]:
    """How ``new``'s schema differs from ``old``'s, in words; empty if it does not."""
    old_types, new_types = {c.name: c.type for c in old}, {c.name: c.type for c in new}
    out = [f"column {c.name!r} was removed" for c in old if c.name not in new_types]
    out += [f"column {c.name!r} was added" for c in new if c.name not in old_types]
    kept_old = [c.name for c in old if c.name in new_types]
    kept_new = [c.name for c in new if c.name in old_types]
    if kept_old != kept_new:
        out.append(f"columns were reordered: {', '.join(kept_old)} -> {', '.join(kept_new)}")
    out += [
        f"column {n!r} changed type from {old_types[n]} to {new_types[n]}"
        for n in kept_old
        if old_types[n] != new_types[n]
    ]
    return out


# ---------------------------------------------------------------- profile of the rows


class _Profile:
    """Row count, nulls, sample, inferred types and commitment, fed batch by batch."""

    def __init__(self, table: tabular.Table, limits: IngestLimits) -> None:
        self.names, self.types, self.limits = table.names, table.types, limits
        self.declared_nullable = table.nullable or [False] * len(table.names)
        names = table.names
        self.hasher = ChunkHasher(limits.chunk_rows)
        self.nulls = [0] * len(names)
        self.guesses = [tabular.TypeGuess() for _ in names] if table.types is None else []
        self.sample: list[tuple[str | None, ...]] = []
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="commitment")
        self._hashing: Future[None] | None = None

    def add(self, columns: list[pa.Array]) -> None:
        """Hash and infer types in a worker thread while this one parses the next batch
        (pyarrow and hashlib release the GIL, so the two use two cores)."""
        if self._hashing is not None:
            self._hashing.result()  # one batch in flight, and batches stay in order
        self._hashing = self._worker.submit(self._digest, columns)
        want = self.limits.sample_rows - len(self.sample)
        if want > 0:
            cells = [c.slice(0, want).to_pylist() for c in columns]
            self.sample.extend(zip(*cells, strict=True))
        for i, col in enumerate(columns):
            self.nulls[i] += col.null_count

    def _digest(self, columns: list[pa.Array]) -> None:
        self.hasher.add(columns)
        for guess, col in zip(self.guesses, columns, strict=False):
            guess.add(col)

    def finish(self) -> list[bytes]:
        if self._hashing is not None:
            self._hashing.result()
        return self.hasher.finish()

    def close(self) -> None:
        self._worker.shutdown(cancel_futures=True)

    def columns(self) -> tuple[ColumnFacts, ...]:
        types = self.types or [g.result() for g in self.guesses]
        return tuple(
            ColumnFacts(name, t, self.declared_nullable[i] or self.nulls[i] > 0, self.nulls[i])
            for i, (name, t) in enumerate(zip(self.names, types, strict=True))
        )


# ---------------------------------------------------------------- CSV text encoding


_ENCODINGS = {  # Python codec name -> how the exchange reads it (GB18030 ⊃ GBK ⊃ GB2312)
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
}


def _declared(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding.strip()).name
    except LookupError:
        name = encoding
    if name not in _ENCODINGS:
        raise UnsupportedEncoding(
            f"The declared encoding {encoding!r} is not accepted; use UTF-8 or GBK/GB18030.",
            declared=encoding,
        )
    return _ENCODINGS[name]


def _gb18030_error_at(store: ObjectStore, key: str) -> int | None:
    decoder = codecs.getincrementaldecoder("gb18030")()
    pos = 0
    with store.open(key) as f:
        while True:
            block = f.read(BLOCK_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                return pos - pending + exc.start
            if not block:
                return None
            pos += len(block)


def _csv_encoding(store: ObjectStore, key: str, got: Received, declared: str | None) -> str:
    want = _declared(declared) if declared else None
    if want == "gb18030":
        if got.utf8_error_at is None and not got.ascii:
            raise UnsupportedEncoding(
                "The file was declared GB18030 (GBK) but it is valid UTF-8 with non-ASCII "
                "text, so it is almost certainly UTF-8: declare utf-8 or leave the encoding out."
            )
        return want  # checked while parsing
    if got.utf8_truncated:
        raise MalformedFile(
            f"The file ends in the middle of a UTF-8 character (byte {got.utf8_error_at}): it "
            "looks truncated.",
            byte=got.utf8_error_at,
        )
    if got.utf8_error_at is None:
        return "utf-8"
    if want is None:
        return "gb18030"  # checked while parsing
    hint = (
        "it looks like GB18030 (GBK): declare that encoding or save the file as UTF-8"
        if _gb18030_error_at(store, key) is None
        else "it is not GB18030 (GBK) either"
    )
    raise UnsupportedEncoding(
        f"The file is not valid UTF-8 at byte {got.utf8_error_at}; {hint}.",
        byte=got.utf8_error_at,
    )
