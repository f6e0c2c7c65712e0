"""The vectorised Criteo parser against a plain per-line reference of the same rules, plus the sniffer."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from hpcdlrm.data.criteo import NUM_FIELDS, REASONS, decode_hex8, log1p_counts, parse_block, sniff
from hpcdlrm.errors import DataError

INT = re.compile(r"-?[0-9]{1,18}")
MISSING = -1  # the reference's raw value of an empty categorical
HEX = re.compile(r"[0-9a-fA-F]{8}")


def reference(line: str) -> tuple[str | None, tuple | None]:
    """The documented rules, one line at a time: (bad reason or None, (label, dense, cat))."""
    f = line.removesuffix("\r").split("\t")
    if len(f) != NUM_FIELDS:
        return "field_count", None
    if not (INT.fullmatch(f[0]) and int(f[0]) in (0, 1)):
        return "label", None
    if any(v and not INT.fullmatch(v) for v in f[1:14]):
        return "dense", None
    if any(v and not HEX.fullmatch(v) for v in f[14:]):
        return "categorical", None
    dense = [np.log1p(np.float32(max(int(v or 0), 0))) for v in f[1:14]]
    return None, (float(int(f[0])), dense, [int(v, 16) if v else MISSING for v in f[14:]])


def line(label="0", dense=None, cat=None) -> str:
    dense = dense if dense is not None else [str(i) for i in range(13)]
    cat = cat if cat is not None else [f"{i:08x}" for i in range(26)]
    return "\t".join([label, *dense, *cat])


def check_against_reference(lines: list[str], newline: str = "\n") -> None:
    data = (newline.join(lines) + newline).encode()
    blk = parse_block(data)
    want = [reference(ln) for ln in lines]
    good = [v for r, v in want if r is None]
    assert blk.lines == len(lines)
    assert blk.bad == {r: sum(w[0] == r for w in want) for r in REASONS if any(w[0] == r for w in want)}
    assert len(blk.label) == len(good)
    if good:
        np.testing.assert_array_equal(blk.label, [g[0] for g in good])
        np.testing.assert_allclose(blk.dense, np.array([g[1] for g in good], np.float32), rtol=1e-6)
        np.testing.assert_array_equal(np.where(blk.present, blk.cat.astype(np.int64), MISSING), [g[2] for g in good])
    bad_lines = [i + 1 for i, (r, _) in enumerate(want) if r is not None]
    assert [e.line for e in blk.examples] == bad_lines[: len(blk.examples)]
    assert [e.reason for e in blk.examples] == [want[i - 1][0] for i in bad_lines[: len(blk.examples)]]


def test_good_lines_missing_values_and_negatives() -> None:
    lines = [
        line("1", ["", "-2", "3", "", "0", "5", "6", "7", "8", "9", "10", "11", "1234567"],
             ["", "ABCDEF01", "ffffffff", *[""] * 22, "00000000"]),
        line("0"),
        "\t".join(["0"] + [""] * 39),  # every feature missing is a good line
    ]
    check_against_reference(lines)
    blk = parse_block(("\n".join(lines) + "\n").encode())
    assert blk.dense[0, 1] == 0.0 and blk.dense[0, 0] == 0.0  # negative and missing -> 0
    assert blk.dense[0, 12] == pytest.approx(math.log1p(1234567), rel=1e-6)
    assert blk.cat[0, :3].tolist() == [0, 0xABCDEF01, 0xFFFFFFFF] and blk.cat[0, 25] == 0
    assert blk.present[0, :3].tolist() == [False, True, True] and blk.present[0, 25]
    assert blk.dense.dtype == np.float32 and blk.label.dtype == np.float32 and blk.cat.dtype == np.uint32


@pytest.mark.parametrize("bad, reason, detail", [
    ("\t".join(line().split("\t")[:39]), "field_count", "got 39"),  # trailing tab stripped
    (line() + "\textra", "field_count", "got 41"),
    ("", "field_count", "empty line"),
    (line("2"), "label", "'2' is not 0 or 1"),
    (line("x"), "label", "is not 0 or 1"),
    (line(""), "label", "not 0 or 1"),
    (line(dense=["260.0"] + ["1"] * 12), "dense", "I1 '260.0' is not an integer"),
    (line(dense=["1"] * 12 + ["abc"]), "dense", "I13 'abc' is not an integer"),
    (line(dense=[" 5"] + ["1"] * 12), "dense", "I1 ' 5'"),  # pyarrow would trim it; we do not
    (line(dense=["0x10"] + ["1"] * 12), "dense", "'0x10'"),
    (line(dense=["1" * 19] + ["1"] * 12), "dense", "is not an integer"),
    (line(cat=["1234567"] + ["0" * 8] * 25), "categorical", "C1 '1234567' is not 8 hex digits"),
    (line(cat=["0" * 8] * 25 + ["123456789"]), "categorical", "C26 '123456789'"),
    (line(cat=["0" * 8] * 3 + ["g0000000"] + ["0" * 8] * 22), "categorical", "C4 'g0000000'"),
    (line(cat=["0" * 8] * 3 + ['"abcdef0'] + ["0" * 8] * 22), "categorical", "C4"),
])
def test_each_bad_reason_is_counted_with_line_and_detail(bad: str, reason: str, detail: str) -> None:
    lines = [line("1"), line(dense=["1"] * 13), bad, line("0")]
    check_against_reference(lines)
    blk = parse_block(("\n".join(lines) + "\n").encode())
    assert blk.bad == {reason: 1} and len(blk.label) == 3
    (ex,) = blk.examples
    assert ex.line == 3 and ex.reason == reason and detail in ex.detail, ex


def test_crlf_and_missing_final_newline() -> None:
    lines = [line("1"), line("0", cat=[""] * 26), line("1")]
    check_against_reference(lines, newline="\r\n")
    blk = parse_block(("\r\n".join(lines)).encode())  # no newline after the last line
    assert blk.lines == 3 and len(blk.label) == 3 and not blk.present[1].any() and blk.present[0].all()


def test_line_numbers_stay_true_around_field_count_errors() -> None:
    rng = np.random.default_rng(1)
    lines = []
    for i in range(300):
        kind = rng.integers(0, 12)
        if kind == 0:
            lines.append("\t".join(line().split("\t")[: rng.integers(1, 40)]))
        elif kind == 1:
            lines.append(line(dense=[str(rng.integers(-3, 99))] * 12 + ["1.5"]))
        elif kind == 2:
            lines.append(line(cat=["zz"] + [f"{i:08X}"] * 25))
        else:
            lines.append(line(str(i % 2), [str(rng.integers(-3, 10**6)) if rng.random() > .2 else "" for _ in range(13)],
                              [f"{rng.integers(0, 2**32):08x}" if rng.random() > .2 else "" for _ in range(26)]))
    blk = parse_block(("\n".join(lines) + "\n").encode(), max_examples=1000)
    check_against_reference(lines)
    assert [e.line for e in blk.examples] == [i + 1 for i, ln in enumerate(lines) if reference(ln)[0]]


def test_parse_block_range_of_a_larger_buffer() -> None:
    text = ("\n".join([line("1"), line("0"), line("1")]) + "\n").encode()
    start = text.index(b"\n") + 1
    blk = parse_block(text, start, len(text))
    assert blk.lines == 2 and blk.label.tolist() == [0.0, 1.0]
    assert parse_block(text, 5, 5).lines == 0


def test_decode_hex8_matches_int() -> None:
    rng = np.random.default_rng(0)
    vals = rng.integers(0, 2**32, 1000, dtype=np.uint64)
    text = "".join(f"{v:08x}" if i % 2 else f"{v:08X}" for i, v in enumerate(vals.tolist())).encode()
    out, ok = decode_hex8(np.frombuffer(text, "<u8"))
    assert ok.all() and out.tolist() == vals.tolist()
    for junk in (b"0000000g", b"/0000000", b":0000000", b"@0000000", b"G0000000", b"`0000000", b"0000\xff000"):
        assert not decode_hex8(np.frombuffer(junk, "<u8"))[1][0], junk


def tsv(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_sniff_accepts_criteo_and_measures_lines() -> None:
    data = tsv([line("1")] * 50)
    assert sniff(data, "f") == pytest.approx(len(data) / 50)
    assert sniff(b"", "empty") > 0


@pytest.mark.parametrize("text, phrase", [
    (tsv([",".join(["Id", "Label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]])])
     + tsv(["7," + line("1").replace("\t", ",")] * 5), "looks like CSV with a header row"),
    (tsv([line("1").replace("\t", ",")] * 5), "looks like CSV"),
    (tsv(["label\t" + "\t".join(f"I{i}" for i in range(1, 40))] + [line("1")] * 5), "header row"),
    (tsv([line("1", ["260.0"] * 13)] * 5), "integer fields written as floats"),
    (tsv(["\t".join(line("1").split("\t")[1:])] * 20), "unlabelled Kaggle test file"),
    (tsv([line("1").rsplit("\t", 2)[0]] * 5 + [line("0")] * 15), "trailing empty fields were stripped"),
    (tsv(["a\tb\tc"] * 10), "do not have 40 fields"),
    (b"\x1f\x8b\x08\x00\x00binary", "binary"),
])
def test_sniff_names_what_the_file_looks_like(text: bytes, phrase: str) -> None:
    with pytest.raises(DataError, match=re.escape(phrase)) as e:
        sniff(text, "in.txt")
    assert str(e.value).startswith("in.txt: ")


def test_sniff_lets_a_few_short_lines_through_as_bad_lines() -> None:
    assert sniff(tsv([line("1")] * 99 + [line("1").rsplit("\t", 1)[0]]), "f") > 0


def test_real_samples_and_traps(shared_criteo) -> None:
    for name in ("kaggle_train_sample_4584.txt", "kaggle_train_sample_200.txt", "terabyte_day_0_part_10000.txt"):
        data = (shared_criteo / name).read_bytes()
        assert sniff(data[:65536], name) > 100
        blk = parse_block(data)
        lines = data.decode().splitlines()
        assert blk.lines == len(lines) and sum(blk.bad.values()) + len(blk.label) == len(lines)
        want = [reference(ln) for ln in lines]
        assert len(blk.label) == sum(r is None for r, _ in want)
        assert blk.label.sum() == sum(v[0] for r, v in want if r is None)
    with pytest.raises(DataError, match="looks like CSV with a header row.*extra leading 'Id' column"):
        sniff((shared_criteo / "traps/csv_with_id_and_header.csv").read_bytes()[:65536], "trap")
    with pytest.raises(DataError, match="looks like CSV with a header row.*integer fields written as floats"):
        sniff((shared_criteo / "traps/pandas_export_floats_header.csv").read_bytes()[:65536], "trap")
    with pytest.raises(DataError, match="unlabelled Kaggle test file"):
        sniff((shared_criteo / "kaggle_test_unlabeled_6042.txt").read_bytes()[:65536], "test")


def test_log1p_counts_table_matches_log1p() -> None:
    v = np.array([-5, 0, 1, 2, 65534, 65535, 65536, 65537, 10**7, 2**31 + 5, 10**17])
    np.testing.assert_array_equal(log1p_counts(v), np.log1p(np.maximum(v, 0).astype(np.float32)))
    assert log1p_counts(v).dtype == np.float32


def test_any_bytes_are_a_bad_line_not_a_crash() -> None:
    good = line("1").encode()
    weird = [line(dense=["\xff1"] + ["1"] * 12), line("\xff"), line(cat=["\xff" * 8] + ["0" * 8] * 25),
             line(cat=["\xff" * 7] + ["0" * 8] * 25), line("1", ["\x00"] * 13)]
    data = b"\n".join([good, *(w.encode("latin-1") for w in weird), good]) + b"\n"
    blk = parse_block(data)
    assert blk.lines == 7 and len(blk.label) == 2
    assert blk.bad == {"dense": 2, "label": 1, "categorical": 2}
    assert [e.line for e in blk.examples] == [2, 3, 4, 5, 6]
    # A short line with non-UTF-8 bytes: pyarrow would fail the whole block decoding it.
    short = b"\n".join([good, "1\t\xe9t\xe9".encode("latin-1"), b"0\xff", good]) + b"\n"
    padded = b"junk\xff\n" + short + b"\xfe"  # a range of a larger buffer, bad bytes outside it too
    for blk in (parse_block(short), parse_block(padded, 6, 6 + len(short))):
        assert blk.lines == 4 and len(blk.label) == 2 and blk.bad == {"field_count": 2}
        assert [e.line for e in blk.examples] == [2, 3]


def test_dense_beyond_int32_is_read_exactly() -> None:
    blk = parse_block(tsv([line("1", ["3000000000"] + ["1"] * 12), line("0")]))
    assert blk.bad == {} and blk.dense[0, 0] == np.log1p(np.float32(3e9))
