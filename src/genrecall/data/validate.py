"""Row-level validation of the contract tables with Great Expectations 1.x, plus quarantine.

``validate_tables`` takes raw DataFrames (whatever a source wrote: strings where numbers belong,
unparseable timestamps, nulls, duplicates) and splits every table into *good* rows, typed to the
contract in ``schema.py``, and *quarantined* rows, kept as they came with a ``reasons`` column naming
each check the row broke. Nothing is dropped silently: rows in == good + quarantined, checked in code.

How the checks run:
1. Coerce each column to its contract type in pandas; a value that will not coerce (``"abc"`` as a
   price, ``"yesterday"`` as a timestamp, a malformed list) gives the reason ``<col>:type``.
2. Checks GX 1.x cannot express on one pandas column (first-occurrence key uniqueness, list subset
   ``purchased ⊆ clicked ⊆ exposed``, cross-table references) become derived boolean columns, each
   checked by ``ExpectColumnValuesToBeInSet([True])``. Everything else (not-null, non-blank, length,
   ranges, enumerations, column-pair order) is a native GX expectation.
3. One GX ``ExpectationSuite`` per table runs once through a ``ValidationDefinition`` on an ephemeral
   context with result_format COMPLETE; ``unexpected_index_list`` maps failures back to rows.

Duplicate keys keep the first occurrence and quarantine the later ones. Cross-table checks use the
*good* rows of the referenced table (validated in dependency order) plus any ``reference`` tables,
so the validated directory is referentially closed; a daily delta passes yesterday's validated
items/users as ``reference``. A check whose reference is absent is skipped and listed in the report.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data import schema as S

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX is imported: no analytics calls

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

PARSE_ERROR_COLUMN = "_parse_error"  # optional input column: a lenient reader's note that a line broke
REASONS_COLUMN = "reasons"
SOURCE_ROW_COLUMN = "source_row"
ORDER = ("categories", "items", "price_events", "users", "requests", "ground_truth",
         "products", "judgments", "sid_assignments")  # dependency order for cross-table checks


@dataclass
class ValidateConfig:
    """Thresholds and ranges for the validate stage."""

    max_bad_share: float = 0.05  # a table fails when more than 5% of its rows are quarantined
    per_table: dict[str, float] = field(default_factory=dict)  # max_bad_share overrides by table name
    title_max_len: int = 500  # longest Home Depot title is ~150 chars; 500 flags garbage, not products
    query_max_len: int = 200  # search boxes cap queries well below this
    # Explicit UTC range every timestamp must lie in. Wide by default (catches epoch-0 and year-9999
    # garbage); the daily rebuild narrows it to the delta's day with dataclasses.replace.
    ts_min: str = "2000-01-01T00:00:00+00:00"
    ts_max: str = "2100-01-01T00:00:00+00:00"
    relevance_min: float = 1.0  # Home Depot judgments are averages of 1-3 ratings
    relevance_max: float = 3.0

    def threshold(self, table: str) -> float:
        return float(self.per_table.get(table, self.max_bad_share))


@dataclass
class TableReport:
    """What validation did to one table."""

    table: str
    rows_in: int
    good: int
    quarantined: int
    bad_share: float
    max_bad_share: float
    passed: bool
    reasons: dict[str, int]  # reason -> number of rows that broke it (a row may count under several)
    skipped: list[str]  # checks not run because their reference table was absent

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ValidationReport:
    """Per-table reports; ``passed`` only when every table is under its bad-share threshold."""

    tables: dict[str, TableReport]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tables.values())

    def failures(self) -> list[TableReport]:
        return [t for t in self.tables.values() if not t.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "tables": {k: v.to_dict() for k, v in self.tables.items()}}

    def to_markdown(self) -> str:
        lines = [f"# Validation: {'PASS' if self.passed else 'FAIL'}", "",
                 "| table | rows in | good | quarantined | bad share | max | result |",
                 "|---|---:|---:|---:|---:|---:|---|"]
        for t in self.tables.values():
            lines.append(f"| {t.table} | {t.rows_in} | {t.good} | {t.quarantined} | {t.bad_share:.2%} "
                         f"| {t.max_bad_share:.2%} | {'pass' if t.passed else '**FAIL**'} |")
        for t in self.tables.values():
            if t.reasons or t.skipped:
                lines += ["", f"## {t.table}"]
                lines += [f"- `{r}`: {n}" for r, n in sorted(t.reasons.items(), key=lambda x: -x[1])]
                lines += [f"- skipped `{s}` (no reference table)" for s in t.skipped]
        return "\n".join(lines) + "\n"


class ValidationError(RuntimeError):
    """Raised when a table's quarantined share passes its threshold; carries the report."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        parts = [f"{t.table}: {t.quarantined}/{t.rows_in} rows bad ({t.bad_share:.1%} > {t.max_bad_share:.1%}"
                 f"; top reasons {dict(Counter(t.reasons).most_common(3))})" for t in report.failures()]
        super().__init__("validation failed for " + "; ".join(parts))


@dataclass
class ValidationResult:
    """Good rows (contract-typed), quarantined rows (as they came + reasons + source_row), report."""

    good: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    report: ValidationReport


# ---------------------------------------------------------------- coercion to the contract types
def _is_null(v: Any) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _int_like(v: Any) -> bool:
    return isinstance(v, (int, np.integer, float, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(v) and float(v).is_integer()


def _parse_int(v: Any) -> tuple[int | None, bool]:
    """An exact int from an int, an integral float or a numeric string; (None, False) otherwise."""
    if _is_null(v):
        return None, True
    if isinstance(v, str):
        try:
            return int(v.strip()), True
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return None, False
            return (int(f), True) if math.isfinite(f) and f.is_integer() else (None, False)
    return (int(v), True) if _int_like(v) else (None, False)


def _coerce_list(v: Any, elem: pa.DataType) -> tuple[Any, bool]:
    if _is_null(v):
        return None, True
    if not isinstance(v, (list, tuple, np.ndarray)):
        return None, False
    if pa.types.is_integer(elem):
        return ([int(x) for x in v], True) if all(_int_like(x) for x in v) else (None, False)
    return (list(v), True) if all(isinstance(x, str) for x in v) else (None, False)


def _coerce_number(raw: pd.Series, typ: pa.DataType) -> tuple[pd.Series, np.ndarray]:
    if pa.types.is_integer(typ) and pd.api.types.is_integer_dtype(raw):
        out, ok = raw.astype("Int64"), np.ones(len(raw), dtype=bool)
    elif pa.types.is_integer(typ) and raw.dtype == object:  # exact: no float64 round trip for big ids
        parsed = [_parse_int(v) for v in raw]
        out = pd.Series([v for v, _ in parsed], index=raw.index, dtype="Int64")
        ok = np.array([good for _, good in parsed], dtype=bool)
    else:
        vals = raw
        if raw.dtype == object:  # refuse bools; numeric strings are fine ("12.5" from a CSV)
            vals = raw.map(lambda v: v.strip() if isinstance(v, str) else (None if isinstance(v, bool) else v))
        num = pd.to_numeric(vals, errors="coerce").astype("float64")
        ok = np.isfinite(num.to_numpy())
        if not pa.types.is_integer(typ):
            return num.where(ok), ok
        ok &= np.mod(np.nan_to_num(num.to_numpy()), 1) == 0
        out = num.where(ok).astype("Int64")
    bound = 2 ** (typ.bit_width - 1)  # a value the contract's int width cannot hold is a type error
    fits = out.isna().to_numpy() | ((out >= -bound) & (out < bound)).fillna(False).to_numpy(dtype=bool)
    return out.where(fits), ok & fits


def _coerce_column(raw: pd.Series, typ: pa.DataType) -> tuple[pd.Series, np.ndarray]:
    """The column in its contract type (bad values -> null) and a mask of values that coerced."""
    if pa.types.is_list(typ):
        null = np.array([_is_null(v) for v in raw], dtype=bool)
    else:
        null = raw.isna().to_numpy(dtype=bool)
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        out, ok = _coerce_number(raw, typ)
    elif pa.types.is_timestamp(typ):
        if pd.api.types.is_datetime64_any_dtype(raw):
            out = pd.to_datetime(raw, utc=True)
        else:
            vals = raw.map(lambda v: v if isinstance(v, (str, datetime, np.datetime64)) else None)
            out = pd.to_datetime(vals, utc=True, errors="coerce", format="mixed")
        out = out.astype("datetime64[us, UTC]")
        ok = out.notna().to_numpy()
    elif pa.types.is_list(typ):
        pairs = [_coerce_list(v, typ.value_type) for v in raw]
        out = pd.Series([p[0] for p in pairs], index=raw.index, dtype=object)
        ok = np.array([p[1] for p in pairs], dtype=bool)
    else:  # string
        ok = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        out = raw.where(ok, None).astype(object)
    return out, ok | null


# ---------------------------------------------------------------- one table's suite under construction
class _Checks:
    """A table being checked: coerced columns, derived flag columns and the GX expectations."""

    def __init__(self, spec: S.TableSpec, raw: pd.DataFrame) -> None:
        self.spec, self.n = spec, len(raw)
        self.raw = raw.reset_index(drop=True)
        self.data = pd.DataFrame(index=self.raw.index)  # contract-typed columns
        self.gx = pd.DataFrame(index=self.raw.index)  # what GX sees: scalars + raw copies + flags
        self.expectations: list[gxe.Expectation] = []
        self.skipped: list[str] = []
        for f in spec.schema:
            if f.name not in self.raw.columns:
                self.data[f.name] = pd.Series([None] * self.n, dtype=object)
                self.flag(f"{f.name}:column_present", np.zeros(self.n, dtype=bool), only_if_broken=True)
                continue
            out, ok = _coerce_column(self.raw[f.name], f.type)
            self.data[f.name] = out
            if not pa.types.is_list(f.type):
                self.gx[f.name] = out
            self.flag(f"{f.name}:type", ok, only_if_broken=True)
        if PARSE_ERROR_COLUMN in self.raw.columns:
            self.flag("row:parses", self.raw[PARSE_ERROR_COLUMN].isna().to_numpy(), only_if_broken=True)

    def _add(self, reason: str, expectation_cls: type, **kwargs: Any) -> None:
        self.expectations.append(expectation_cls(meta={"reason": reason}, **kwargs))

    def flag(self, reason: str, ok: np.ndarray, *, only_if_broken: bool = False) -> None:
        """A derived check: rows where ``ok`` is False break ``reason``.

        ``only_if_broken`` adds the expectation only when some row breaks it (the type checks: a
        column that coerced cleanly would pass trivially, and each GX expectation costs ~10 ms).
        """
        if only_if_broken and bool(np.all(ok)):
            return
        col = f"__ok__{reason}"
        self.gx[col] = np.asarray(ok, dtype=bool)
        self._add(reason, gxe.ExpectColumnValuesToBeInSet, column=col, value_set=[True])

    def not_null(self, *cols: str) -> None:
        for c in cols:  # on the raw value: a present-but-malformed value is a type error, not a null
            raw = self.raw[c] if c in self.raw.columns else pd.Series([None] * self.n)
            self.gx[f"__raw__{c}"] = raw.map(lambda v: None if _is_null(v) else True)
            self._add(f"{c}:not_null", gxe.ExpectColumnValuesToNotBeNull, column=f"__raw__{c}")

    def unique(self, *cols: str) -> None:
        """Key uniqueness; the first occurrence is kept, later ones break ``<key>:unique``."""
        key = self.data[list(cols)]
        dup = key.astype(str).duplicated(keep="first").to_numpy() & key.notna().all(axis=1).to_numpy()
        self.flag(f"{'+'.join(cols)}:unique", ~dup)

    def not_blank(self, col: str) -> None:
        self._add(f"{col}:not_blank", gxe.ExpectColumnValuesToMatchRegex, column=col, regex=r"\S")

    def text(self, col: str, max_len: int) -> None:
        self.not_null(col)
        self.not_blank(col)
        self._add(f"{col}:max_length", gxe.ExpectColumnValueLengthsToBeBetween, column=col, max_value=max_len)

    def between(self, col: str, reason: str, lo: Any = None, hi: Any = None, strict_min: bool = False) -> None:
        self._add(f"{col}:{reason}", gxe.ExpectColumnValuesToBeBetween, column=col, min_value=lo,
                  max_value=hi, strict_min=strict_min)

    def in_set(self, col: str, reason: str, values: Any) -> None:
        values = sorted(values)
        self._add(f"{col}:{reason}", gxe.ExpectColumnValuesToBeInSet, column=col, value_set=values)

    def ts(self, cfg: ValidateConfig, *cols: str, required: bool = True) -> None:
        for c in cols:
            if required:
                self.not_null(c)
            self.between(c, "in_range", pd.Timestamp(cfg.ts_min), pd.Timestamp(cfg.ts_max))

    def not_before(self, later: str, earlier: str) -> None:
        self._add(f"{later}:not_before_{earlier}", gxe.ExpectColumnPairValuesAToBeGreaterThanB,
                  column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing")

    def known(self, col: str, reason: str, ids: set | None, *, is_list: bool = False) -> None:
        """Every id in ``col`` (a scalar or a list) is in ``ids``; nulls pass (checked elsewhere)."""
        if ids is None:
            self.skipped.append(f"{col}:{reason}")
            return
        vals = self.data[col]
        if is_list:
            ok = [v is None or all(x in ids for x in v) for v in vals]
        else:
            ok = [_is_null(v) or v in ids for v in vals]
        self.flag(f"{col}:{reason}", np.array(ok, dtype=bool))

    def subset(self, small: str, big: str) -> None:
        ok = [a is None or b is None or set(a) <= set(b) for a, b in zip(self.data[small], self.data[big])]
        self.flag(f"{small}:subset_of_{big}", np.array(ok, dtype=bool))


# ---------------------------------------------------------------- the suites, one per contract
_Refs = dict[str, set | None]  # "category_ids", "leaf_category_ids", "item_ids", "user_ids", ...


def _categories(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("category_id", "level")
    c.unique("category_id")
    c.known("parent_id", "in_tree", _ids(c.data, "category_id") | (refs["category_ids"] or set()))
    c.in_set("level", "in_1_2_3", [1, 2, 3])
    c.text("name", cfg.title_max_len)
    c.text("path", cfg.title_max_len)


def _items(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "price")
    c.unique("item_id")
    c.text("title", cfg.title_max_len)
    c.between("price", "positive", lo=0, strict_min=True)
    c.known("category_id", "in_tree", refs["category_ids"])  # null = explicitly unknown, allowed
    c.ts(cfg, "listed_at", "updated_at")
    c.ts(cfg, "delisted_at", required=False)
    c.not_before("delisted_at", "listed_at")
    c.not_before("updated_at", "listed_at")


def _price_events(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "price")
    c.unique("item_id", "ts")
    c.ts(cfg, "ts")
    c.between("price", "positive", lo=0, strict_min=True)
    c.known("item_id", "known_item", refs["item_ids"])


def _users(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("user_id")
    c.unique("user_id")
    c.not_blank("user_id")
    c.in_set("gender", "in_set", ["f", "m", "u"])
    c.in_set("price_tier", "in_set", ["high", "low", "mid"])
    c.known("category_interests", "in_tree", refs["category_ids"], is_list=True)
    c.ts(cfg, "created_at")


def _requests(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("request_id", "exposed", "clicked", "purchased")
    c.unique("request_id")
    c.ts(cfg, "ts")
    c.text("query", cfg.query_max_len)
    c.known("user_id", "known_user", refs["user_ids"])  # null = anonymous, allowed
    c.flag("exposed:distinct", np.array([v is None or len(set(v)) == len(v) for v in c.data["exposed"]]))
    c.subset("clicked", "exposed")
    c.subset("purchased", "clicked")
    c.known("exposed", "known_items", refs["item_ids"], is_list=True)


def _ground_truth(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("request_id", "relevant")
    c.unique("request_id")
    c.known("request_id", "known_request", refs["request_ids"])
    c.known("intent_category_id", "in_tree", refs["category_ids"])
    c.known("relevant", "known_items", refs["item_ids"], is_list=True)


def _products(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id")
    c.unique("item_id")
    c.text("title", cfg.title_max_len)


def _judgments(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "relevance")
    c.text("query", cfg.query_max_len)
    c.unique("query", "item_id")
    c.between("relevance", "in_range", lo=cfg.relevance_min, hi=cfg.relevance_max)
    c.known("item_id", "known_product", refs["product_ids"])


def _sid_assignments(c: _Checks, refs: _Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "sid", "codes")
    c.unique("item_id")
    c.flag("sid:matches_codes", np.array([s is None or v is None or s == S.sid_to_str(v)
                                          for s, v in zip(c.data["sid"], c.data["codes"])]))
    c.known("item_id", "known_item", refs["item_ids"])


SUITES: dict[str, Callable[[_Checks, _Refs, ValidateConfig], None]] = {
    "categories": _categories, "items": _items, "price_events": _price_events, "users": _users,
    "requests": _requests, "ground_truth": _ground_truth, "products": _products,
    "judgments": _judgments, "sid_assignments": _sid_assignments,
}
# which reference id set each table provides: name -> (ref key, key column)
PROVIDES = {"categories": ("category_ids", "category_id"), "items": ("item_ids", "item_id"),
            "users": ("user_ids", "user_id"), "requests": ("request_ids", "request_id"),
            "products": ("product_ids", "item_id")}


# ---------------------------------------------------------------- running GX and splitting rows
def _gx_context() -> Any:
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _run_suite(ctx: Any, name: str, checks: _Checks) -> list[list[str]]:
    """Run the table's suite in GX; the list of broken reasons for every row."""
    asset = ctx.data_sources.add_pandas(f"genrecall_{name}").add_dataframe_asset(name)
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=checks.expectations))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(
        name=name, data=asset.add_batch_definition_whole_dataframe("whole"), suite=suite))
    result = vd.run(batch_parameters={"dataframe": checks.gx}, result_format={"result_format": "COMPLETE"})
    reasons: list[list[str]] = [[] for _ in range(checks.n)]
    for r in result.results:
        reason = r.expectation_config.meta["reason"]
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX could not run {reason} on {name}: {r.exception_info}")
        for i in r.result.get("unexpected_index_list") or []:
            reasons[int(i)].append(reason)
    return reasons


def _ids(df: pd.DataFrame, col: str) -> set:
    return {v.item() if hasattr(v, "item") else v for v in df[col].dropna()}


def _refs(reference: Mapping[str, pd.DataFrame]) -> _Refs:
    refs: _Refs = {k: None for k, _ in PROVIDES.values()}
    for table, (key, col) in PROVIDES.items():
        if table in reference:
            refs[key] = _ids(reference[table], col)
    return refs


def _merge_ref(refs: _Refs, key: str, ids: set) -> None:
    refs[key] = ids | (refs[key] or set())


def validate_tables(tables: Mapping[str, pd.DataFrame], cfg: ValidateConfig | None = None,
                    reference: Mapping[str, pd.DataFrame] | None = None) -> ValidationResult:
    """Validate raw tables (by contract name) against their suites; see the module docstring.

    ``reference``: already-validated tables (e.g. yesterday's items/users) that cross-table checks may
    point into, on top of this batch's own good rows.
    """
    cfg = cfg or ValidateConfig()
    unknown = sorted(set(tables) - set(SUITES))
    if unknown:
        raise ValueError(f"no contract for table(s) {unknown}; known: {sorted(SUITES)}")
    refs = _refs(reference or {})
    ctx = _gx_context()
    good, quarantine, reports = {}, {}, {}
    for name in [t for t in ORDER if t in tables]:
        spec = S.ALL_TABLES[name]
        checks = _Checks(spec, tables[name])
        SUITES[name](checks, refs, cfg)
        row_reasons = _run_suite(ctx, name, checks) if checks.n else []
        bad = np.array([bool(r) for r in row_reasons], dtype=bool)
        good[name] = checks.data.loc[~bad, spec.columns].reset_index(drop=True)
        q = checks.raw.loc[bad].copy()
        q.insert(0, SOURCE_ROW_COLUMN, np.flatnonzero(bad).astype("int64"))
        q[REASONS_COLUMN] = [r for r in row_reasons if r]
        quarantine[name] = q.reset_index(drop=True)
        if len(good[name]) + len(quarantine[name]) != checks.n:  # the no-silent-drop invariant
            raise RuntimeError(f"{name}: {checks.n} rows in != {len(good[name])} good + {len(q)} quarantined")
        share = float(bad.mean()) if checks.n else 0.0
        reports[name] = TableReport(
            table=name, rows_in=checks.n, good=len(good[name]), quarantined=int(bad.sum()), bad_share=share,
            max_bad_share=cfg.threshold(name), passed=share <= cfg.threshold(name),
            reasons=dict(sorted(Counter(r for rs in row_reasons for r in rs).items())), skipped=checks.skipped)
        if name in PROVIDES:
            key, col = PROVIDES[name]
            _merge_ref(refs, key, _ids(good[name], col))
    return ValidationResult(good=good, quarantine=quarantine, report=ValidationReport(reports))


def quarantine_to_arrow(df: pd.DataFrame) -> pa.Table:
    """A quarantine frame as Arrow; columns whose raw values mix types are stored as strings."""
    arrays, names = [], []
    for col in df.columns:
        values = df[col]
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            arr = pa.array([None if _is_null(v) else str(v) for v in values], type=pa.string())
        arrays.append(arr)
        names.append(str(col))
    if REASONS_COLUMN in df.columns:
        arrays[names.index(REASONS_COLUMN)] = pa.array(list(df[REASONS_COLUMN]), type=pa.list_(pa.string()))
    return pa.Table.from_arrays(arrays, names=names)
