"""Reading a stored CSV or Parquet file as batches of text columns, refusing what is broken.

Both formats come out the same way: the column names and the rows as Arrow string arrays
(one per column, cells as text, null distinct from the empty string), batch by batch. That
is what ``ingest`` profiles and what the content commitment hashes, so a CSV and a Parquet
file holding the same text commit alike.

CSV: pyarrow's streaming reader (single-threaded, 4 MiB blocks) over the bytes as UTF-8
(GB18030 is transcoded on the way), every column read as text. Parquet: batch by batch
after the footer's sizes are checked, every value cast to text as Arrow casts it.
"""

from __future__ import annotations

import codecs
import csv
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from databourse.assets.errors import (
    DecompressionBomb,
    MalformedFile,
    UnsupportedEncoding,
    UnsupportedFormat,
)
from databourse.assets.store import ObjectStore

CSV_BLOCK_BYTES = 4 << 20  # pyarrow CSV block; also the longest row accepted
PARQUET_BATCH_ROWS = 128 * 1024  # at most; fewer for wide rows (PARQUET_BATCH_BYTES)
PARQUET_BATCH_BYTES = 64 << 20  # decoded bytes a batch aims at: bounds memory per batch


def stored_batches(
    f: BinaryIO, fmt: str, encoding: str | None, start: int
) -> Iterator[tuple[int, list[pa.Array]]]:
    """(first row number, text columns) of a stored file's batches, from about ``start``."""
    offset = 0
    if fmt == "csv":
        for columns in csv_table(f, encoding or "utf-8", None, None).batches:
            yield offset, columns
            offset += len(columns[0])
        return
    pf = parquet_file(f)
    groups = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    first = 0
    while first < len(groups) and offset + groups[first] <= start:  # skip whole row groups
        offset += groups[first]
        first += 1
    batch_rows = _batch_rows(
        sum(pf.metadata.row_group(i).total_byte_size for i in range(len(groups))), sum(groups)
    )
    for batch in pf.iter_batches(batch_rows, row_groups=range(first, len(groups))):
        names = batch.schema.names
        yield offset, [as_text(c, n) for c, n in zip(batch.columns, names, strict=True)]
        offset += batch.num_rows


class _NotGB18030(Exception):
    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


class _CsvStream(io.RawIOBase):
    """The stored bytes as UTF-8 (transcoded from GB18030 if need be), then ``tail``."""

    def __init__(self, raw: BinaryIO, encoding: str, tail: bytes) -> None:
        self._raw, self._tail, self._pos = raw, tail, 0
        self._decoder = codecs.getincrementaldecoder("gb18030")() if encoding == "gb18030" else None
        self._buf = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Exactly ``size`` bytes until the end: pyarrow takes each read as one block."""
        n = CSV_BLOCK_BYTES if size is None or size < 0 else size
        if self._decoder is None and not self._buf and not self._eof:
            block = self._raw.read(n)
            if len(block) == n:
                return block  # the common case, without a copy
            self._buf += block
            self._eof = not block
            if self._eof:
                self._buf += self._tail
        while not self._eof and len(self._buf) < n:
            block = self._raw.read(n)
            self._buf += self._transcode(block) if self._decoder else block
            self._eof = not block
            if self._eof:
                self._buf += self._tail
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _transcode(self, block: bytes) -> bytes:
        assert self._decoder is not None
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            raise _NotGB18030(self._pos - pending + exc.start) from None
        if self._pos == 0 and text.startswith("\ufeff"):
            text = text[1:]  # GB18030's byte order mark
        self._pos += len(block)
        return text.encode("utf-8")


@dataclass
class Table:
    """A file opened for reading: its column names and its rows as batches of text columns."""

    names: list[str]
    types: list[str] | None  # None: to be inferred from the text (CSV)
    nullable: list[bool] | None  # declared by the schema (Parquet)
    batches: Iterator[list[pa.Array]]


class RaggedRow(MalformedFile):
    """A row with more or fewer fields than the header (located in a second pass)."""

    def __init__(self, row: pacsv.InvalidRow) -> None:
        self.row = row
        super().__init__(
            f"A row has {row.actual_columns} fields but the header has {row.expected_columns}: "
            f"{row.text[:200]!r}.",
            fields=row.actual_columns,
            expected_fields=row.expected_columns,
        )


def _open_csv(
    f: BinaryIO, encoding: str, width: int, on_invalid: Callable[[Any], str], tail: bytes
) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        _CsvStream(f, encoding, tail),
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, autogenerate_column_names=True),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={f"f{i}": pa.string() for i in range(width)},  # every cell as text
            strings_can_be_null=True,  # an empty cell is null ...
            quoted_strings_can_be_null=False,  # ... but "" is the empty string
            null_values=[""],  # and "NULL", "NaN" … stay text
            check_utf8=False,  # receive() checked it, or GB18030 was transcoded
        ),
    )


def csv_table(
    f: BinaryIO, encoding: str, max_columns: int | None, utf8_error_at: int | None
) -> Table:
    """Header names and the data rows as text columns.

    A sentinel row is appended after the file's last byte: if the file ends inside a quoted
    field (a cut upload), pyarrow swallows the sentinel into that field, which is detected.
    ``max_columns`` None (re-reading a stored file) first probes the width.
    """
    token = uuid.uuid4().hex
    seen_sentinel: list[bool] = []

    bad: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if row.text.strip("\r\n") == token:
            seen_sentinel.append(True)
            return "skip"
        bad.append(row)  # an exception raised here would be ignored by pyarrow
        return "error"

    try:
        if max_columns is None:
            max_columns = len(_open_csv(f, encoding, 0, on_invalid, b"\n").schema)
            f.seek(0)
        reader = _open_csv(f, encoding, max_columns + 1, on_invalid, f"\n{token}\n".encode())
        width = len(reader.schema)
        if width > max_columns:
            raise MalformedFile(
                f"The file has {width} columns; at most {max_columns} are accepted.",
                columns=width,
            )
        first = next(b for b in _read(reader, utf8_error_at, bad) if b.num_rows)
    except StopIteration:
        raise MalformedFile("The file has no header row.") from None
    except _NotGB18030 as exc:
        raise _encoding_error(exc.at, utf8_error_at) from None
    except pa.ArrowInvalid as exc:
        raise _parse_error(exc, bad) from None
    header = [c[0].as_py() for c in first.columns]
    check_names(header, token)

    def rows() -> Iterator[list[pa.Array]]:
        prev = [c.slice(1) for c in first.columns]
        for batch in _read(reader, utf8_error_at, bad):  # one batch behind, to strip the sentinel
            if len(prev[0]):
                yield prev
            prev = batch.columns
        if width == 1 and len(prev[0]) and prev[0][-1].as_py() == token:
            seen_sentinel.append(True)
            prev = [prev[0].slice(0, len(prev[0]) - 1)]
        if not seen_sentinel:
            raise MalformedFile(
                "The file ends inside a quoted field (a quote is never closed): it looks truncated."
            )
        if len(prev[0]):
            yield prev

    return Table(header, None, None, rows())


def _read(
    reader: pacsv.CSVStreamingReader, utf8_error_at: int | None, bad: list[pacsv.InvalidRow]
) -> Iterator[pa.RecordBatch]:
    """The reader's batches, with decoding and parse errors translated into refusals."""
    try:
        yield from reader
    except _NotGB18030 as exc:
        raise _encoding_error(exc.at, utf8_error_at) from None
    except pa.ArrowInvalid as exc:
        raise _parse_error(exc, bad) from None


def _parse_error(exc: pa.ArrowInvalid, bad: list[pacsv.InvalidRow]) -> MalformedFile:
    if bad:
        return RaggedRow(bad[0])
    msg = str(exc)
    if "straddl" in msg:
        return MalformedFile(f"A row is longer than {CSV_BLOCK_BYTES} bytes, the most accepted.")
    if "Empty CSV" in msg:
        return MalformedFile("The file has no header row.")
    return MalformedFile(f"The file is not well-formed CSV: {msg}.")


def locate_ragged_row(exc: RaggedRow, store: ObjectStore, key: str, encoding: str) -> MalformedFile:
    """The ragged row's number, found with Python's csv module (only when refusing)."""
    want = exc.row.expected_columns
    with store.open(key) as raw:
        text = io.TextIOWrapper(raw, "utf-8-sig" if encoding == "utf-8" else "gb18030", newline="")
        try:
            records = (r for r in csv.reader(text) if r)  # pyarrow skips blank lines too
            next(records, None)
            for number, record in enumerate(records, start=1):
                if len(record) != want:
                    return MalformedFile(
                        f"Row {number} has {len(record)} fields but the header has {want}.",
                        row=number,
                        fields=len(record),
                        expected_fields=want,
                    )
        except (csv.Error, UnicodeDecodeError):
            pass
    return exc


def check_names(names: Sequence[str | None], token: str = "") -> None:
    if list(names) == [token]:
        raise MalformedFile("The file has no header row: it holds only blank lines.")
    for i, name in enumerate(names):
        if name is None or not name.strip():
            raise MalformedFile(f"Column {i + 1} has no name.", column=i + 1)
    dupes = sorted({n for n in names if n is not None and names.count(n) > 1})
    if dupes:
        raise MalformedFile(
            f"The column names {', '.join(map(repr, dupes))} occur more than once.",
            columns=dupes,
        )


def _encoding_error(at: int, utf8_error_at: int | None) -> UnsupportedEncoding:
    if utf8_error_at is None:  # only a stored file changed behind our back
        return UnsupportedEncoding(f"The file is not valid GB18030 (GBK) at byte {at}.", byte=at)
    return UnsupportedEncoding(
        f"The file is neither UTF-8 (invalid at byte {utf8_error_at}) nor GB18030 (GBK) "
        f"(invalid at byte {at}).",
        byte=utf8_error_at,
    )


# ---------------------------------------------------------------- types of text


_NARROWEST = ("integer", "number", "boolean", "date", "timestamp")
_LEADING_ZERO = r"^[+-]?0[0-9]"  # "007", "000001": codes, not numbers
_PROBE_ROWS = 256
_BOOLEANS = pa.array(["true", "false"])


def _leading_zero(arr: pa.Array) -> bool:
    """Whether a cell looks like "007": a code, not a number. A prefix test picks the few
    candidates ("0.5" also starts with 0); the regex, ten times slower, only sees those."""
    for prefix in ("0", "-0", "+0"):
        hits = pc.starts_with(arr, prefix)
        if pc.any(hits).as_py():
            candidates = pc.filter(arr, hits)
            if pc.any(pc.match_substring_regex(candidates, _LEADING_ZERO)).as_py():
                return True
    return False


def _casts(arr: pa.Array, to: pa.DataType) -> bool:
    """Whether every cell casts. A failing cast costs as much as the whole array (Arrow does
    not stop at the first bad cell), so a short prefix goes first: most failures show there."""
    try:
        if len(arr) > _PROBE_ROWS:
            pc.cast(arr.slice(0, _PROBE_ROWS), to)
        pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


class TypeGuess:
    """The narrowest logical type every non-null cell of a text column fits, batch by batch.

    Each candidate is tried with a vectorized cast and dropped at its first failure; a
    passing integer implies number, a passing date implies timestamp.
    """

    def __init__(self) -> None:
        self.alive = set(_NARROWEST)
        self.seen = False

    def add(self, arr: pa.Array) -> None:
        if arr.null_count == len(arr) or not self.alive:
            return
        self.seen = True
        alive = self.alive
        if {"integer", "number"} & alive and _leading_zero(arr):
            alive -= {"integer", "number"}
        if "integer" in alive and not _casts(arr, pa.int64()):
            alive.discard("integer")
        if "integer" not in alive and "number" in alive and not _casts(arr, pa.float64()):
            alive.discard("number")
        if "boolean" in alive and not (
            _casts(arr, pa.bool_())
            and pc.sum(pc.is_in(pc.utf8_lower(arr), _BOOLEANS)).as_py() == len(arr) - arr.null_count
        ):
            alive.discard("boolean")
        if "date" in alive and not _casts(arr, pa.date32()):
            alive.discard("date")
        if (
            "date" not in alive
            and "timestamp" in alive
            and not (_casts(arr, pa.timestamp("us")) or _casts(arr, pa.timestamp("us", "UTC")))
        ):
            alive.discard("timestamp")

    def result(self) -> str:
        if not self.seen:
            return "string"
        return next((t for t in _NARROWEST if t in self.alive), "string")


# ---------------------------------------------------------------- Parquet


def parquet_file(f: BinaryIO) -> pq.ParquetFile:
    if f.read(4) != b"PAR1":
        raise MalformedFile("The file is not Parquet: it does not begin with the bytes PAR1.")
    f.seek(0)
    try:
        return pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as exc:
        raise MalformedFile(
            f"The Parquet footer cannot be read ({exc}): the file is truncated or corrupt."
        ) from None


def logical_type(t: pa.DataType) -> str | None:
    """The logical type of an Arrow type; None for nested types, which are not accepted."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    checks = (
        ("string", (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)),
        ("integer", (pa.types.is_integer,)),
        ("number", (pa.types.is_floating, pa.types.is_decimal)),
        ("boolean", (pa.types.is_boolean,)),
        ("date", (pa.types.is_date,)),
        ("timestamp", (pa.types.is_timestamp,)),
        ("binary", (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)),
        ("binary", (pa.types.is_binary_view,)),
        ("string", (pa.types.is_time, pa.types.is_duration, pa.types.is_null)),
    )
    return next((name for name, tests in checks if any(test(t) for test in tests)), None)


def _min_bits(t: pa.DataType) -> int:
    """A lower bound of one value's decoded size in bits (offsets for variable sizes)."""
    if pa.types.is_dictionary(t):
        t = t.index_type
    try:
        return int(t.bit_width)
    except ValueError:
        return 64 if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else 32


def parquet_table(f: BinaryIO, max_columns: int, max_decoded: int) -> Table:
    pf = parquet_file(f)
    schema, meta = pf.schema_arrow, pf.metadata
    if len(schema) > max_columns:
        raise MalformedFile(
            f"The file has {len(schema)} columns; at most {max_columns} are accepted.",
            columns=len(schema),
        )
    check_names(schema.names)
    types = [logical_type(fld.type) for fld in schema]
    for fld, t in zip(schema, types, strict=True):
        if t is None:
            raise UnsupportedFormat(
                f"Column {fld.name!r} has the nested type {fld.type}; only flat columns are "
                "accepted.",
                column=fld.name,
            )
    stored = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    floor = meta.num_rows * sum(_min_bits(fld.type) for fld in schema) // 8
    _check_decoded(max(stored, floor), max_decoded)
    batch_rows = _batch_rows(max(stored, floor), meta.num_rows)

    def rows() -> Iterator[list[pa.Array]]:
        decoded = count = 0
        try:
            for batch in pf.iter_batches(batch_rows):
                # the metadata may lie: count what really comes out, dictionaries expanded
                decoded += sum(_decoded_nbytes(c) for c in batch.columns)
                _check_decoded(decoded, max_decoded)
                count += batch.num_rows
                yield [as_text(c, n) for c, n in zip(batch.columns, schema.names, strict=True)]
        except (pa.ArrowException, OSError) as exc:
            raise MalformedFile(f"The Parquet data cannot be decoded: {exc}.") from None
        if count != meta.num_rows:
            raise MalformedFile(
                f"The Parquet footer promises {meta.num_rows} rows but the file holds {count}."
            )

    return Table(
        schema.names, [t or "string" for t in types], [fld.nullable for fld in schema], rows()
    )


def _batch_rows(decoded: int, rows: int) -> int:
    """Rows per batch: large batches decode faster, wide rows need smaller ones."""
    per_row = max(1, decoded // max(rows, 1))
    return max(1024, min(PARQUET_BATCH_ROWS, PARQUET_BATCH_BYTES // per_row))


def _decoded_nbytes(arr: pa.Array) -> int:
    """Bytes a column takes once decoded; a dictionary column counts every repeat of its
    values (computed from the value lengths, without materialising them)."""
    if not pa.types.is_dictionary(arr.type):
        return int(arr.nbytes)
    values = arr.dictionary
    if (
        pa.types.is_string(values.type)
        or pa.types.is_binary(values.type)
        or (pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type))
    ):
        lengths = pc.binary_length(values).take(arr.indices)
        return int(pc.sum(lengths).as_py() or 0) + int(arr.indices.nbytes)
    width = max(values.type.bit_width // 8, 1) if hasattr(values.type, "bit_width") else 8
    return len(arr) * width + int(arr.indices.nbytes)


def _check_decoded(size: int, limit: int) -> None:
    if size > limit:
        raise DecompressionBomb(
            f"The file expands to at least {size} bytes when decoded; the limit is {limit}.",
            decoded_bytes=size,
            max_decoded_bytes=limit,
        )


def as_text(arr: pa.Array, name: str) -> pa.Array:
    """A Parquet column as Arrow casts it to text; binary as lowercase hex."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if logical_type(t) == "binary":
        return pa.array([None if v is None else v.hex() for v in arr.to_pylist()], pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid:
            raise MalformedFile(f"Column {name!r} holds text that is not UTF-8.") from None
        return arr
    return pc.cast(arr, pa.string())
