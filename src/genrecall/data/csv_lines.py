"""A CSV reader that accounts for every physical line: one record per line, or a reason why not.

``csv.reader`` over a whole file is the wrong tool for files people export by hand: an unterminated
quote swallows every later line into one field (those rows silently vanish into a title), a field over
128 KiB raises an uncaught ``_csv.Error`` and kills the run, and a latin-1 byte in a UTF-8 file forces
a choice between crashing and mis-decoding the whole file. ``read_csv_lines`` instead:

- decodes by BOM (UTF-8, UTF-16, UTF-32), else UTF-8 line by line; a file where *no* line is valid
  UTF-8 beyond ASCII is read as latin-1 (the Kaggle originals), while a UTF-8 file with a few
  undecodable lines keeps those lines as records with an error (they are quarantined, not guessed);
- splits lines on ``\\r\\n``, ``\\r`` or ``\\n`` (CRLF files read as LF files) and parses each line
  on its own, so a record never spans lines: a quote left open at the end of a line is an error on
  *that* line ("unterminated quote"), and the next line is read as the next record;
- flags NUL bytes and fields longer than ``max_field_chars`` (default 128 KiB, the ``csv`` module's
  limit) instead of raising; the field is kept, cut to ``keep_chars``, so the quarantine stays small;
- counts blank lines (not records) so that ``header + blank + records == lines``.

A header that cannot be read is a ``CsvFormatError`` naming the file and line 1; everything below it
is a record, good or with an ``error``. What a record *means* (columns, types, ranges) is left to the
caller (``judged.py`` and the validation suites).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_FIELD_CHARS = 131_072  # the csv module's default field limit (128 KiB): larger is not a title or a query
KEEP_CHARS = 1_000  # an oversized field is kept in the quarantine cut to this many characters
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)  # UTF-32 before UTF-16: the UTF-32 LE mark begins with the UTF-16 LE one


class CsvFormatError(ValueError):
    """The file cannot be read as a table at all (no header, a broken header); names the file and line."""


@dataclass
class CsvRecord:
    """One physical line below the header: its fields, and why it is broken (None = it parsed)."""

    line: int  # 1-based line number in the file
    fields: list[str]
    error: str | None = None


@dataclass
class CsvLines:
    """A whole file: header, one record per non-blank line, and the accounting."""

    path: Path
    encoding: str
    header: list[str]
    records: list[CsvRecord] = field(default_factory=list)
    lines: int = 0  # physical lines, header included
    blank: int = 0  # blank (or whitespace-only) lines: not records

    def check_accounting(self) -> None:
        if 1 + self.blank + len(self.records) != self.lines:
            raise RuntimeError(
                f"{self.path}: {self.lines} lines != header + {self.blank} blank + {len(self.records)} records"
            )


@contextlib.contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _split_bytes(data: bytes) -> list[bytes]:
    lines = _LINE_END.split(data)
    return lines[:-1] if lines and lines[-1] == b"" else lines  # a final line end ends a line, not starts one


def _decode_lines(data: bytes) -> tuple[str, list[str], dict[int, str]]:
    """(encoding, lines, {line index: decoding error})."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            if enc == "utf-8-sig":
                return _utf8_lines(data[len(bom) :], "utf-8 (BOM)")
            text = data.decode(enc, errors="replace")  # whole-file codecs: a bad unit becomes U+FFFD, flagged below
            lines = re.split(r"\r\n|\r|\n", text)
            lines = lines[:-1] if lines and lines[-1] == "" else lines
            errors = {i: f"undecodable {enc} bytes (replaced by U+FFFD)" for i, s in enumerate(lines) if "\ufffd" in s}
            return f"{enc} (BOM)", lines, errors
    return _utf8_lines(data, "utf-8")


def _utf8_lines(data: bytes, name: str) -> tuple[str, list[str], dict[int, str]]:
    raw = _split_bytes(data)
    lines: list[str] = []
    errors: dict[int, str] = {}
    utf8_non_ascii = 0
    for i, b in enumerate(raw):
        try:
            s = b.decode("utf-8")
            utf8_non_ascii += not b.isascii()
        except UnicodeDecodeError as e:
            s = b.decode("latin-1")
            errors[i] = f"not valid UTF-8 (byte 0x{b[e.start]:02x} at column {e.start + 1}) in a UTF-8 file"
        lines.append(s)
    if errors and not utf8_non_ascii:  # not one line needs UTF-8: a latin-1 file, every byte is a character
        return "latin-1", [b.decode("latin-1") for b in raw], {}
    return name, lines, errors


def _parse_line(text: str, max_field_chars: int, keep_chars: int) -> tuple[list[str], str | None]:
    """Fields of one line, and what is wrong with it (None: nothing)."""
    error = None
    with _field_limit(sys.maxsize):
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as e:
            fields = next(csv.reader([text]))  # tolerant parse: the fields go to the quarantine as they are
            if "unexpected end of data" in str(e):
                error = "unterminated quote: a quoted field runs past the end of the line"
    if "\x00" in text:
        error = error or f"NUL byte at column {text.index(chr(0)) + 1}"
    for k, f in enumerate(fields):
        if len(f) > max_field_chars:
            error = error or f"field {k + 1} has {len(f):,} characters (more than {max_field_chars:,})"
            fields[k] = f[:keep_chars] + "…"
    return fields, error


def read_csv_lines(
    path: str | Path, *, max_field_chars: int = MAX_FIELD_CHARS, keep_chars: int = KEEP_CHARS
) -> CsvLines:
    """Read ``path`` line by line (see the module docstring); raises ``CsvFormatError`` for the header only."""
    path = Path(path)
    encoding, lines, decode_errors = _decode_lines(path.read_bytes())
    first = next((i for i, s in enumerate(lines) if s.strip()), None)
    if first is None:
        raise CsvFormatError(f"{path}: empty file, expected a header line")
    if first in decode_errors:
        raise CsvFormatError(f"{path}: line {first + 1} (the header): {decode_errors[first]}")
    header, error = _parse_line(lines[first], max_field_chars, keep_chars)
    if error:
        raise CsvFormatError(f"{path}: line {first + 1} (the header): {error}")
    out = CsvLines(path, encoding, header, lines=len(lines), blank=first)
    for i in range(first + 1, len(lines)):
        text = lines[i]
        if not text.strip(" \t,"):  # blank, or only separators: not a record
            out.blank += 1
            continue
        fields, error = _parse_line(text, max_field_chars, keep_chars)
        out.records.append(CsvRecord(i + 1, fields, decode_errors.get(i) or error))
    out.check_accounting()
    return out
