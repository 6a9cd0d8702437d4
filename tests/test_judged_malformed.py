"""Malformed judged CSVs: every line below the header is one row, good or quarantined with its reason
and line, or the file fails with a message naming the line. Nothing is merged or dropped silently:
rows in = good + quarantined = the file's non-blank data lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrecall.data.csv_lines import CsvFormatError, read_csv_lines
from genrecall.data.judged import load_judged, read_judgments, read_products
from genrecall.data.validate import ValidateConfig

ANY = ValidateConfig(max_bad_share=1.0)  # these files are mostly broken on purpose: count, do not fail
GOOD = [
    "200001,Cordless Drill 18V",
    "200002,Cabinet Pull 3 in.",
    "200003,Garden Hose 50 ft",
    "200004,LED Bulb 60W",
    "200005,Kitchen Faucet Chrome",
]
JUDGMENTS = "query,item_id,relevance\ndrill,200001,3\nhose,200003,2.5\nbulb,200004,2\nfaucet,200005,3\n"


def _files(tmp_path: Path, products: bytes, judgments: str = JUDGMENTS) -> tuple[Path, Path]:
    p, j = tmp_path / "products.csv", tmp_path / "judgments.csv"
    p.write_bytes(products)
    j.write_text(judgments)
    return p, j


def _quarantined(js, table: str = "products") -> dict[int, str]:
    """file line -> reasons + parse note of each quarantined row."""
    q = js.quarantine[table]
    return {int(line): f"{list(r)} {note}" for line, r, note in zip(q["_line"], q["reasons"], q["_parse_error"])}


def _lines(*rows: str, end: str = "\n") -> bytes:
    return (end.join(["item_id,title", *rows]) + end).encode()


def test_an_unterminated_quote_breaks_one_line_not_the_rest_of_the_file(tmp_path: Path) -> None:
    # csv.reader over the file made lines 3-6 one title and 2 rows of 5 (3 rows lost, nobody told)
    p, j = _files(tmp_path, _lines(GOOD[0], '200002,"Cabinet Pull, 3 in.', *GOOD[2:]))
    js = load_judged(p, j, cfg=ANY)
    rep = js.report.tables["products"]
    assert (rep.rows_in, rep.good, rep.quarantined) == (5, 4, 1)
    assert list(_quarantined(js)) == [3] and "unterminated quote" in _quarantined(js)[3]
    assert list(js.products["item_id"]) == [200001, 200003, 200004, 200005]


def test_a_field_over_128_kib_is_quarantined_not_a_crash(tmp_path: Path) -> None:
    p, j = _files(tmp_path, _lines(GOOD[0], "200002," + "x" * 200_000, *GOOD[2:]))
    js = load_judged(p, j, cfg=ANY)
    assert js.report.tables["products"].rows_in == 5 and list(_quarantined(js)) == [3]
    assert "200,000 characters (more than 131,072)" in _quarantined(js)[3]
    assert len(js.quarantine["products"]["title"].iloc[0]) < 2_000, "the quarantine keeps a cut of the field"


@pytest.mark.parametrize(
    "header, words",
    [
        ("item_id,product_uid,title", "'item_id' and 'product_uid' both give 'item_id'"),
        ("product_uid,title,item_id", "'product_uid' and 'item_id' both give 'item_id'"),
        ("item_id,title,Title", "'title' and 'title' both give 'title'"),
        ("id,title", "no 'item_id' column"),
        ('item_id,"title', "unterminated quote"),
    ],
)
def test_an_unusable_header_fails_naming_line_1(tmp_path: Path, header: str, words: str) -> None:
    p, _ = _files(tmp_path, (header + "\n" + "\n".join(GOOD) + "\n").encode())
    with pytest.raises(CsvFormatError, match="line 1") as err:
        read_products(p)
    assert words in str(err.value) and str(p) in str(err.value)


def test_encodings_bom_and_line_ends_read_the_same_rows(tmp_path: Path) -> None:
    rows = [GOOD[0], "200002,Crème brûlée torch", *GOOD[2:]]
    text = "\n".join(["item_id,title", *rows]) + "\n"
    variants = {
        "utf8": text.encode(),
        "utf8-bom": b"\xef\xbb\xbf" + text.encode(),
        "crlf": text.replace("\n", "\r\n").encode(),
        "cr": text.replace("\n", "\r").encode(),
        "latin1": text.encode("latin-1"),
        "utf16": text.encode("utf-16"),
        "utf16-crlf": text.replace("\n", "\r\n").encode("utf-16"),
        "no-final-newline": text.rstrip("\n").encode(),
    }
    for name, data in variants.items():
        (tmp_path / name).mkdir()
        p, _ = _files(tmp_path / name, data)
        df = read_products(p)
        assert list(df["title"]) == [r.split(",", 1)[1] for r in rows], name
        assert df["_parse_error"].isna().all() and list(df["_line"]) == [2, 3, 4, 5, 6], name


def test_latin1_bytes_in_a_utf8_file_quarantine_their_line_only(tmp_path: Path) -> None:
    data = b"item_id,title\n200001,Cr\xc3\xa8me paint\n200002,Caf\xe9 table\n200003,Garden Hose\n"
    p, j = _files(tmp_path, data, "query,item_id,relevance\npaint,200001,3\n")
    df = read_products(p)
    assert df["title"].iloc[0] == "Crème paint", "the UTF-8 lines are not mis-decoded as latin-1"
    js = load_judged(p, j, cfg=ANY)
    assert list(_quarantined(js)) == [3] and "not valid UTF-8 (byte 0xe9 at column 11)" in _quarantined(js)[3]


def test_nul_bytes_blank_lines_and_extra_fields(tmp_path: Path) -> None:
    data = _lines(GOOD[0], "", "200002,Cabinet\x00Pull", "   ", "200003,Garden Hose,50 ft,green", GOOD[3], ",,")
    (tmp_path / "x.csv").write_bytes(data)
    f = read_csv_lines(tmp_path / "x.csv")
    assert (f.lines, f.blank, len(f.records)) == (8, 3, 4), "header + blank + records = lines"
    p, j = _files(tmp_path, data)
    js = load_judged(p, j, cfg=ANY)
    rep = js.report.tables["products"]
    assert (rep.rows_in, rep.good, rep.quarantined) == (4, 2, 2)
    q = _quarantined(js)
    assert "NUL byte at column 15" in q[4] and "extra: ['50 ft', 'green']" in q[6]


def test_split_judged_keeps_the_parse_errors(tmp_path: Path) -> None:
    """split-judged used to write only query,item_id,relevance: a malformed line reached eval-real clean."""
    from genrecall.cli import app

    judgments = JUDGMENTS + 'saw,200002,"3\nsaw blade,200002,2\ndrill,200001,3,extra\n'
    p, j = _files(tmp_path, _lines(*GOOD), judgments)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    res = CliRunner().invoke(
        app,
        [
            "split-judged",
            "--judgments",
            str(j),
            "--train-out",
            str(train),
            "--test-out",
            str(test),
            "--test-share",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2 malformed line(s) kept" in res.output
    halves = [read_judgments(train), read_judgments(test)]
    assert sum(len(h) for h in halves) == 7, "every line of the input is in one half"
    notes = [n for h in halves for n in h["_parse_error"].dropna()]
    assert len(notes) == 2 and any("line 6: unterminated quote" in n for n in notes)
    assert any("line 8: 4 fields for 3 columns" in n for n in notes)
    quarantined = 0
    for half in (train, test):
        js = load_judged(p, half, cfg=ANY)
        rep = js.report.tables["judgments"]
        assert rep.rows_in == rep.good + rep.quarantined
        quarantined += rep.reasons.get("row:parses", 0)
    assert quarantined == 2, "eval-real's loader quarantines what the split carried"
