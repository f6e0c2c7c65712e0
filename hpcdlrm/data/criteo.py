"""Criteo click-log text -> arrays, vectorised, with bad-line accounting; and a format sniffer.

Canonical Criteo TSV: tab-separated, no header, one sample per line, 40 fields: label (0/1),
I1..I13 (integers, may be empty), C1..C26 (8 hex digits, may be empty).

:func:`parse_block` turns a buffer of whole lines into arrays with no per-line Python: pyarrow's CSV
reader splits the fields (serially, so invalid rows carry their line number), and numpy decodes the
hex fields eight bytes at a time. A line is *bad* for exactly one reason, the first that applies in
``REASONS`` order; bad lines are dropped, counted and the first few kept with their line and detail.

Short lines (37-39 fields, as left by tools that strip trailing tabs) are bad lines ("field_count"),
never padded: a short line cannot be told apart from one that lost a field in the middle, and 39
fields is also the unlabelled Kaggle test file; padding would silently shift those into wrong columns.
:func:`sniff` refuses whole files that look stripped, so only stray short lines reach the parser.
CRLF line endings are accepted (pyarrow ends a line at ``\\r\\n``); any other byte in a field that
does not belong there makes that line bad, never the whole block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import DataError
from .format import NUM_DENSE, NUM_SPARSE

NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
DENSE_NAMES = tuple(f"I{i}" for i in range(1, NUM_DENSE + 1))
CAT_NAMES = tuple(f"C{i}" for i in range(1, NUM_SPARSE + 1))
NAMES = ("label", *DENSE_NAMES, *CAT_NAMES)
REASONS = ("field_count", "label", "dense", "categorical")

# Fast path: integers, and categoricals as 8-byte fixed-size values (empty -> null): no offsets to
# build or read. Any other value fails the conversion, and the block is read again as text.
_FAST_TYPES = {"label": pa.int8(), **{n: pa.int32() for n in DENSE_NAMES}, **{n: pa.binary(8) for n in CAT_NAMES}}
_SLOW_TYPES = {n: pa.binary() for n in NAMES}  # bytes, not str: a line may hold anything, even invalid UTF-8
_INT_PATTERN = r"^-?[0-9]{1,18}$"  # 18 digits: anything longer would overflow int64
# pyarrow's integer reader also takes " 5" and "0x1f"; a block with a space or an x takes the text path.
_LENIENT = (b" ", b"x", b"X")


@dataclass(frozen=True)
class BadLine:
    line: int  # 1-based, within the parsed buffer (callers add their offset)
    reason: str
    detail: str


@dataclass
class Block:
    """The good rows of one buffer (arrays may be transposed views: index them, don't assume layout)."""

    label: np.ndarray  # (n,) float32 0/1
    dense: np.ndarray  # (n, 13) float32, log(1 + max(x, 0))
    cat: np.ndarray  # (n, 26) uint32 raw hex values, 0 where empty
    present: np.ndarray  # (n, 26) bool, False where empty
    lines: int  # physical lines consumed (good + bad)
    bad: dict[str, int] = field(default_factory=dict)
    examples: list[BadLine] = field(default_factory=list)


def read_table(data: bytes | memoryview, text: bool = False, invalid: list[tuple[int, int]] | None = None,
               use_threads: bool = False) -> pa.Table:
    """pyarrow's CSV reader over whole Criteo lines: typed (``text`` False; raises ArrowInvalid on a
    value it cannot convert) or all text. Lines with a wrong field count are skipped and appended to
    ``invalid`` as (line number, fields); the numbers are known only without ``use_threads``."""
    def on_invalid(row: pacsv.InvalidRow) -> str:
        if invalid is not None:
            invalid.append((row.number, row.actual_columns))
        return "skip"

    buf = pa.py_buffer(data)
    return pacsv.read_csv(
        pa.BufferReader(buf),
        read_options=pacsv.ReadOptions(column_names=NAMES, use_threads=use_threads,
                                       block_size=(1 << 20) if use_threads else max(1 << 20, buf.size + 1)),
        # No quoting: a '"' is data (and then fails validation), never a field that spans tabs or lines.
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                         ignore_empty_lines=False, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(column_types=_SLOW_TYPES if text else _FAST_TYPES, null_values=[""],
                                             check_utf8=False, strings_can_be_null=not text),
    )


def _pair_table() -> np.ndarray:
    """uint16 lookup: two ASCII hex digits (as a little-endian uint16) -> their byte value, else 0x100."""
    table = np.full(1 << 16, 0x100, np.uint16)
    digits = np.frombuffer(b"0123456789abcdefABCDEF", np.uint8).astype(np.uint16)
    values = np.array([*range(16), *range(10, 16)], np.uint16)
    table[digits[:, None] | (digits[None, :] << 8)] = (values[:, None] << 4) | values[None, :]
    return table


_PAIRS = _pair_table().astype("<u2")  # read-only, 128 KiB; little-endian like the u8 view below
_PAIR_INVALID = np.uint64(0x0100010001000100)


def decode_hex8(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8 ASCII hex digits per little-endian uint64 word -> (uint32 values, valid mask).

    One table lookup per digit pair; the four looked-up uint16s of a value are then checked at once
    by viewing them as one uint64 (a pair is invalid iff its 0x100 bit is set). Narrowed to bytes,
    the pairs read most significant first, so a byte swap of each uint32 gives the value.
    """
    pairs = np.take(_PAIRS, words.view("<u2"))
    valid = (pairs.view("<u8") & _PAIR_INVALID) == 0
    values = pairs.astype(np.uint8).view("<u4")
    values.byteswap(inplace=True)
    return values, valid


def _validity(cols: list[pa.Array], n: int) -> np.ndarray:
    """(len(cols), n) bool: which values are not null, unpacked for all columns in one call."""
    nbytes = (n + 7) // 8
    bits = np.full((len(cols), nbytes), 0xFF, np.uint8)
    for j, col in enumerate(cols):
        if col.null_count:
            if col.offset % 8:  # (never for freshly read columns) a bitmap not starting on a byte
                bits[j] = np.packbits(~col.is_null().to_numpy(zero_copy_only=False), bitorder="little")
            else:
                bits[j] = np.frombuffer(col.buffers()[0], np.uint8, nbytes, col.offset // 8)
    return np.unpackbits(bits, axis=1, count=n, bitorder="little").view(bool)


def decode_hex_columns(cols: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Categorical columns -> (values (k, n) uint32, 0 where empty; present (k, n); row valid (n,)).

    All columns are decoded in one go (few numpy calls per block). Fast path: fixed-size 8-byte
    columns, whose value buffers are the words to decode (null slots are decoded too, then zeroed).
    """
    k = len(cols)
    if pa.types.is_fixed_size_binary(cols[0].type):
        words = np.concatenate([np.frombuffer(c.buffers()[1], "<u8", n, c.offset * 8) for c in cols])
        present = _validity(cols, n)
        values, ok = decode_hex8(words)
        values = values.reshape(k, n)
        values *= present
        return values, present, (ok.reshape(k, n) | ~present).all(axis=0)
    # Text path: binary columns that may hold values of other lengths (those are invalid).
    lengths = np.empty((k, n), np.int32)
    for j, col in enumerate(cols):
        offsets = np.frombuffer(col.buffers()[1], np.int32, n + 1, col.offset * 4)
        np.subtract(offsets[1:], offsets[:-1], out=lengths[j])
    present = lengths == 8
    decoded, ok = decode_hex8(np.concatenate([_gathered_words(col, p) for col, p in zip(cols, present)]))
    values = np.zeros((k, n), np.uint32)
    values[present] = decoded
    valid = present | (lengths == 0)
    valid[present] &= ok
    return values, present, valid.all(axis=0)


def _gathered_words(col: pa.Array, present: np.ndarray) -> np.ndarray:
    """The present 8-byte values of a column that also holds values of other lengths."""
    if not present.any():
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(col.buffers()[1], np.int32, len(col) + 1, col.offset * 4)
    data = np.frombuffer(col.buffers()[2], np.uint8)
    idx = offsets[:-1][present, None] + np.arange(8)
    return np.ascontiguousarray(data[np.minimum(idx, len(data) - 1)]).view("<u8")[:, 0]


def _bytes(text: str) -> pa.Scalar:
    return pa.scalar(text.encode(), pa.binary())


def _numbers(col: pa.Array) -> np.ndarray:
    dtype = np.dtype(col.type.to_pandas_dtype())
    return np.frombuffer(col.buffers()[1], dtype, len(col), col.offset * dtype.itemsize)


def _label(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_binary(col.type):  # slow path: the same integers the fast path reads ("01" is 1)
        col = pc.cast(pc.if_else(pc.match_substring_regex(col, _INT_PATTERN), col, _bytes("-1")), pa.int64())
    v = _numbers(col)
    ok = (v == 0) | (v == 1)
    if col.null_count:
        ok &= _validity([col], len(col))[0]
    return (v == 1).astype(np.float32), ok


def _dense(cols: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(13, n) integers (nulls -> 0) and the row valid mask."""
    if not pa.types.is_binary(cols[0].type):
        dense = np.empty((len(cols), n), np.int32)
        for j, col in enumerate(cols):
            dense[j] = _numbers(col)
        if any(c.null_count for c in cols):
            dense *= _validity(cols, n)
        return dense, np.ones(n, bool)
    # Slow path: some value in the block is not a plain integer; values may also exceed int32.
    dense, ok = np.zeros((len(cols), n), np.int64), np.ones(n, bool)
    for j, col in enumerate(cols):
        is_int = pc.match_substring_regex(col, _INT_PATTERN)
        ok &= pc.or_(is_int, pc.equal(col, _bytes(""))).to_numpy(zero_copy_only=False)
        dense[j] = pc.cast(pc.if_else(is_int, col, _bytes("0")), pa.int64()).to_numpy()
    return dense, ok


_LOG1P_SMALL = np.log1p(np.arange(1 << 16, dtype=np.float32))  # read-only constant, 256 KiB


def log1p_counts(v: np.ndarray) -> np.ndarray:
    """float32 log(1 + max(v, 0)) of integers; a table lookup below 65536 (4x faster than log1p)."""
    v = np.maximum(v, 0)
    out = _LOG1P_SMALL[np.minimum(v, len(_LOG1P_SMALL) - 1)]
    big = v >= len(_LOG1P_SMALL)
    if big.any():
        out[big] = np.log1p(v[big].astype(np.float32))
    return out


def _row_lines(rows: int, invalid_lines: list[int]) -> np.ndarray:
    """1-based physical line of every table row: the lines pyarrow did not report invalid."""
    return np.setdiff1d(np.arange(1, rows + len(invalid_lines) + 1), invalid_lines)


def _empty_lines(data: bytes, start: int, end: int) -> np.ndarray:
    """1-based numbers of the empty lines (pyarrow reads one as a row of nulls, not as invalid)."""
    if data.find(b"\n\n", start, end) < 0 and data.find(b"\n\r\n", start, end) < 0 and \
            data[start:start + 1] not in (b"\n", b"\r"):
        return np.zeros(0, np.int64)
    raw = np.frombuffer(data, np.uint8, end - start, start)
    ends = np.flatnonzero(raw == 10)
    starts = np.r_[0, ends[:-1] + 1]
    length = ends - starts
    return np.flatnonzero((length == 0) | ((length == 1) & (raw[starts] == 13))) + 1


def _detail(table: pa.Table, row: int, reason: str) -> str:
    values = table.slice(row, 1).to_pylist()[0]
    if reason == "label":
        v = values["label"]
        v = v.decode("latin-1") if isinstance(v, bytes) else "" if v is None else str(v)
        return f"{v!r} is not 0 or 1"
    names = DENSE_NAMES if reason == "dense" else CAT_NAMES
    for n in names:
        v = values[n]
        v = v.decode("latin-1") if isinstance(v, bytes) else v
        if reason == "dense" and v is not None and v != "" and not re.fullmatch(_INT_PATTERN, str(v)):
            return f"{n} {v!r} is not an integer"
        if reason == "categorical" and v and not re.fullmatch(r"[0-9a-fA-F]{8}", v):
            return f"{n} {v!r} is not 8 hex digits"
    return f"{reason} field out of range"


def parse_block(data: bytes, start: int = 0, end: int | None = None, max_examples: int = 5) -> Block:
    """Parse the whole lines in ``data[start:end]`` (the last may lack its newline) into the good rows
    and bad-line counts."""
    end = len(data) if end is None else end
    if end <= start:
        return _empty(0)
    raw = np.frombuffer(data, np.uint8, end - start, start)
    if raw.max() >= 0x80:
        # pyarrow decodes an invalid row's text as UTF-8 before our handler sees it, and fails the whole
        # block on bytes that are not. No valid field holds a non-ASCII byte: as '?', its line stays bad.
        data, start, end = np.where(raw >= 0x80, np.uint8(ord("?")), raw).tobytes(), 0, end - start
    view = memoryview(data)[start:end]
    invalid: list[tuple[int, int]] = []
    table = None
    if all(data.find(c, start, end) < 0 for c in _LENIENT):
        try:
            table = read_table(view, invalid=invalid)
        except pa.ArrowInvalid:
            invalid.clear()
    if table is None:
        # Some label or dense value is not a plain integer: read text, validate column by column.
        table = read_table(view, text=True, invalid=invalid)
    n = table.num_rows
    cols = [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in table.columns]
    label, ok_label = _label(cols[0])
    dense, ok_dense = _dense(cols[1:1 + NUM_DENSE], n)
    cat, present, ok_cat = decode_hex_columns(cols[1 + NUM_DENSE:], n)
    empty = np.zeros(n, bool)  # empty lines: a wrong field count, not a bad label
    if not ok_label.all() and len(empty_lines := _empty_lines(data, start, end)):
        empty[np.isin(_row_lines(n, [ln for ln, _ in invalid]), empty_lines)] = True
    masks = {"field_count": empty, "label": ~ok_label & ~empty, "dense": ok_label & ~ok_dense,
             "categorical": ok_label & ok_dense & ~ok_cat}
    bad = {r: int(np.count_nonzero(m)) for r, m in masks.items()}
    bad["field_count"] += len(invalid)
    examples = _examples(table, invalid, masks, max_examples) if sum(bad.values()) else []
    good = ok_label & ok_dense & ok_cat
    dense, cat, present = log1p_counts(dense).T, cat.T, present.T
    if not good.all():
        label, dense, cat, present = label[good], dense[good], cat[good], present[good]
    return Block(label=label, dense=dense, cat=cat, present=present, lines=n + len(invalid),
                 bad={r: c for r, c in bad.items() if c}, examples=examples)


def _examples(table: pa.Table, invalid: list[tuple[int, int]], masks: dict[str, np.ndarray],
              limit: int) -> list[BadLine]:
    found = [BadLine(line, "field_count", f"{NUM_FIELDS} fields expected, got {got}") for line, got in invalid[:limit]]
    row_lines = _row_lines(table.num_rows, [line for line, _ in invalid])
    for reason, mask in masks.items():
        for r in np.flatnonzero(mask)[:limit].tolist():
            detail = "empty line" if reason == "field_count" else _detail(table, r, reason)
            found.append(BadLine(int(row_lines[r]), reason, detail))
    return sorted(found, key=lambda b: b.line)[:limit]


def _empty(lines: int) -> Block:
    return Block(np.empty(0, np.float32), np.empty((0, NUM_DENSE), np.float32), np.empty((0, NUM_SPARSE), np.uint32),
                 np.empty((0, NUM_SPARSE), bool), lines)


# ---------------------------------------------------------------------------------------------
# Sniffing: recognise files that are not Criteo TSV before parsing millions of "bad lines".

SNIFF_BYTES = 1 << 16
_INT_RE = re.compile(r"-?[0-9]+")
_FLOAT_INT_RE = re.compile(r"-?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|-?[0-9]+[eE][-+]?[0-9]+")
_EXPECTED = "Criteo TSV: tab-separated, no header, 40 fields per line (label, I1..I13, C1..C26)"


def sniff(head: bytes, where: str) -> float:
    """Check the first bytes of a file look like Criteo TSV; return the mean line length in bytes.

    Raises DataError saying what the file looks like instead: CSV, a header row, an Id column,
    integers written as floats (a pandas export), the unlabelled test file, stripped trailing tabs.
    """
    if b"\0" in head:
        raise DataError(f"{where}: looks like a binary file, not text; expected {_EXPECTED}")
    complete = head[: head.rfind(b"\n") + 1] or head  # a single (long or last) line may lack its newline
    lines = [ln.rstrip(b"\r").decode("utf-8", "replace") for ln in complete.split(b"\n")[:200]]
    lines = [ln for ln in lines if ln]
    if not lines:
        return 256.0
    problems = _csv_problems(lines) if "\t" not in lines[0] else _tsv_problems(lines)
    if problems:
        raise DataError(f"{where}: looks like {'; '.join(problems)}. Expected {_EXPECTED}. "
                        "Convert it to that layout first: columns are never guessed or shifted.")
    return len(complete) / max(1, complete.count(b"\n"))


def _csv_problems(lines: list[str]) -> list[str]:
    sep = "," if lines[0].count(",") >= lines[0].count(";") else ";"
    rows = [ln.split(sep) for ln in lines]
    header = not _INT_RE.fullmatch(rows[0][0].strip())
    data = rows[1:] if header else rows
    width = max(len(r) for r in (data or rows))
    if width < 10:
        return [f"neither TSV nor CSV (no tabs, and at most {width} {sep!r}-separated fields per line)"]
    name = "comma" if sep == "," else "semicolon"
    found = [f"CSV{' with a header row' if header else ''} ({name}-separated; line 1: {lines[0][:50]!r}...)"]
    if width == NUM_FIELDS + 1 and (rows[0][0].strip().lower() == "id" or not header):
        found.append(f"an extra leading {rows[0][0].strip() if header else 'Id'!r} column ({width} columns, not {NUM_FIELDS})")
    elif width != NUM_FIELDS:
        found.append(f"{width} columns instead of {NUM_FIELDS}")
    floats = _float_fields(data, first_dense=max(1, 1 + width - NUM_FIELDS), first_line=2 if header else 1)
    if floats:
        found.append(floats)
    return found


def _tsv_problems(lines: list[str]) -> list[str]:
    rows = [ln.split("\t") for ln in lines]
    counts = [len(r) for r in rows]
    found = []
    header = not _INT_RE.fullmatch(rows[0][0].strip()) and any(c.isalpha() for c in rows[0][0])
    if header:
        found.append(f"TSV with a header row ({lines[0][:60]!r}...)")
        rows, counts = rows[1:], counts[1:]
    if rows and all(c == NUM_FIELDS - 1 for c in counts):
        found.append(f"the unlabelled Kaggle test file: every line has {NUM_FIELDS - 1} fields (no label column); "
                     "only labelled training data can be preprocessed")
    elif rows and sum(NUM_FIELDS - 3 <= c < NUM_FIELDS for c in counts) >= max(2, 0.05 * len(rows)):
        short = sum(NUM_FIELDS - 3 <= c < NUM_FIELDS for c in counts)
        found.append(f"trailing empty fields were stripped: {short} of the first {len(rows)} lines have "
                     f"{NUM_FIELDS - 3}-{NUM_FIELDS - 1} fields (restore them, e.g. "
                     f"awk -F'\\t' -v OFS='\\t' '{{$40=$40}}1' IN > OUT)")
    elif rows and sum(c != NUM_FIELDS for c in counts) > len(rows) // 2:
        first = next(i for i, c in enumerate(counts) if c != NUM_FIELDS)
        found.append(f"not Criteo TSV: most of the first {len(rows)} lines do not have {NUM_FIELDS} fields "
                     f"(line {first + 1 + header} has {counts[first]})")
    floats = _float_fields(rows, first_dense=1, first_line=2 if header else 1)
    if floats:
        found.append(floats)
    return found


def _float_fields(rows: list[list[str]], first_dense: int, first_line: int) -> str | None:
    """Integer columns written as floats (``260.0``) in at least half the lines: a pandas round trip."""
    hits = []
    for i, row in enumerate(rows):
        for j, v in enumerate(row[first_dense:first_dense + NUM_DENSE]):
            if _FLOAT_INT_RE.fullmatch(v.strip()):
                hits.append((i, j, v.strip()))
                break
    if not rows or len(hits) * 2 < len(rows):
        return None
    i, j, v = hits[0]
    return (f"integer fields written as floats (e.g. {v!r} in {DENSE_NAMES[j]} on line {i + first_line}; "
            f"{len(hits)} of {len(rows)} lines), as pandas writes integer columns that have missing values")
