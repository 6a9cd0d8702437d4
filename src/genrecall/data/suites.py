"""The per-table checks behind ``validate_tables``: coercion to the contract types and one suite per
contract (``SUITES``), each a list of Great Expectations expectations plus derived flag columns.

``data/validate.py`` runs them through GX and splits good from quarantined rows; this file says *what*
is checked. Adding a contract table = a schema in ``schema.py`` + a ``_<table>`` function here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data import schema as S
from genrecall.data.validate_config import ValidateConfig

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX is imported: no analytics calls

import great_expectations.expectations as gxe

PARSE_ERROR_COLUMN = "_parse_error"  # optional input column: a lenient reader's note that a line broke


# ---------------------------------------------------------------- coercion to the contract types
def is_null(v: Any) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _int_like(v: Any) -> bool:
    return (
        isinstance(v, (int, np.integer, float, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and math.isfinite(v)
        and float(v).is_integer()
    )


def _parse_int(v: Any) -> tuple[int | None, bool]:
    """An exact int from an int, an integral float or a numeric string; (None, False) otherwise."""
    if is_null(v):
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
    if is_null(v):
        return None, True
    if not isinstance(v, (list, tuple, np.ndarray)):
        return None, False
    if pa.types.is_integer(elem):
        if isinstance(v, np.ndarray) and v.dtype.kind in "iu":  # a typed Parquet list: ints already
            return v.tolist(), True
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
        null = np.array([is_null(v) for v in raw], dtype=bool)
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
class Checks:
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
            self.gx[f"__raw__{c}"] = raw.map(lambda v: None if is_null(v) else True)
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
        self._add(
            f"{col}:{reason}",
            gxe.ExpectColumnValuesToBeBetween,
            column=col,
            min_value=lo,
            max_value=hi,
            strict_min=strict_min,
        )

    def in_set(self, col: str, reason: str, values: Any) -> None:
        values = sorted(values)
        self._add(f"{col}:{reason}", gxe.ExpectColumnValuesToBeInSet, column=col, value_set=values)

    def ts(self, cfg: ValidateConfig, *cols: str, required: bool = True) -> None:
        for c in cols:
            if required:
                self.not_null(c)
            self.between(c, "in_range", pd.Timestamp(cfg.ts_min), pd.Timestamp(cfg.ts_max))

    def in_day(self, cfg: ValidateConfig, col: str) -> None:
        """A daily delta's log rows lie in the day being ingested (``cfg.day_start``/``day_end``)."""
        if cfg.day_start is not None and cfg.day_end is not None:
            ts, lo, hi = self.data[col], pd.Timestamp(cfg.day_start), pd.Timestamp(cfg.day_end)
            self.flag(f"{col}:in_day", (ts.isna() | ((ts >= lo) & (ts < hi))).to_numpy(dtype=bool))

    def not_before(self, later: str, earlier: str) -> None:
        self._add(
            f"{later}:not_before_{earlier}",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB,
            column_A=later,
            column_B=earlier,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        )

    def known(self, col: str, reason: str, ids: set | None, *, is_list: bool = False) -> None:
        """Every id in ``col`` (a scalar or a list) is in ``ids``; nulls pass (checked elsewhere)."""
        if ids is None:
            self.skipped.append(f"{col}:{reason}")
            return
        vals = self.data[col]
        if is_list:
            ok = [v is None or all(x in ids for x in v) for v in vals]
        else:
            ok = [is_null(v) or v in ids for v in vals]
        self.flag(f"{col}:{reason}", np.array(ok, dtype=bool))

    def subset(self, small: str, big: str) -> None:
        ok = [a is None or b is None or set(a) <= set(b) for a, b in zip(self.data[small], self.data[big])]
        self.flag(f"{small}:subset_of_{big}", np.array(ok, dtype=bool))


# ---------------------------------------------------------------- the suites, one per contract
Refs = dict[str, set | None]  # "category_ids", "leaf_category_ids", "item_ids", "user_ids", ...


def _categories(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("category_id", "level")
    c.unique("category_id")
    c.known("parent_id", "in_tree", id_set(c.data, "category_id") | (refs["category_ids"] or set()))
    c.in_set("level", "in_1_2_3", [1, 2, 3])
    c.text("name", cfg.title_max_len)
    c.text("path", cfg.title_max_len)


def _items(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "price")
    c.unique("item_id")
    c.text("title", cfg.title_max_len)
    c.between("price", "positive", lo=0, strict_min=True)
    c.known("category_id", "in_tree", refs["category_ids"])  # null = explicitly unknown, allowed
    c.ts(cfg, "listed_at", "updated_at")
    c.ts(cfg, "delisted_at", required=False)
    c.not_before("delisted_at", "listed_at")
    c.not_before("updated_at", "listed_at")


def _price_events(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "price")
    c.unique("item_id", "ts")
    c.ts(cfg, "ts")
    c.in_day(cfg, "ts")
    c.between("price", "positive", lo=0, strict_min=True)
    c.known("item_id", "known_item", refs["item_ids"])


def _users(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("user_id")
    c.unique("user_id")
    c.not_blank("user_id")
    c.in_set("gender", "in_set", ["f", "m", "u"])
    c.in_set("price_tier", "in_set", ["high", "low", "mid"])
    c.known("category_interests", "in_tree", refs["category_ids"], is_list=True)
    c.ts(cfg, "created_at")


def _requests(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("request_id", "exposed", "clicked", "purchased")
    c.unique("request_id")
    if refs["request_ids"] is not None:  # a daily delta: a request of an earlier day delivered again
        c.flag("request_id:not_ingested_before", ~c.data["request_id"].isin(refs["request_ids"]).to_numpy(dtype=bool))
    c.ts(cfg, "ts")
    c.in_day(cfg, "ts")
    c.text("query", cfg.query_max_len)
    c.known("user_id", "known_user", refs["user_ids"])  # null = anonymous, allowed
    c.flag("exposed:distinct", np.array([v is None or len(set(v)) == len(v) for v in c.data["exposed"]]))
    c.subset("clicked", "exposed")
    c.subset("purchased", "clicked")
    c.known("exposed", "known_items", refs["item_ids"], is_list=True)


def _ground_truth(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("request_id", "relevant")
    c.unique("request_id")
    c.known("request_id", "known_request", refs["request_ids"])
    c.known("intent_category_id", "in_tree", refs["category_ids"])
    c.known("relevant", "known_items", refs["item_ids"], is_list=True)


def _products(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id")
    c.unique("item_id")
    c.text("title", cfg.title_max_len)


def _judgments(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "relevance")
    c.text("query", cfg.query_max_len)
    c.unique("query", "item_id")
    c.between("relevance", "in_range", lo=cfg.relevance_min, hi=cfg.relevance_max)
    c.known("item_id", "known_product", refs["product_ids"])


def _sid_assignments(c: Checks, refs: Refs, cfg: ValidateConfig) -> None:
    c.not_null("item_id", "sid", "codes")
    c.unique("item_id")
    c.flag(
        "sid:matches_codes",
        np.array([s is None or v is None or s == S.sid_to_str(v) for s, v in zip(c.data["sid"], c.data["codes"])]),
    )
    c.known("item_id", "known_item", refs["item_ids"])


SUITES: dict[str, Callable[[Checks, Refs, ValidateConfig], None]] = {
    "categories": _categories,
    "items": _items,
    "price_events": _price_events,
    "users": _users,
    "requests": _requests,
    "ground_truth": _ground_truth,
    "products": _products,
    "judgments": _judgments,
    "sid_assignments": _sid_assignments,
}
# which reference id set each table provides: name -> (ref key, key column)
PROVIDES = {
    "categories": ("category_ids", "category_id"),
    "items": ("item_ids", "item_id"),
    "users": ("user_ids", "user_id"),
    "requests": ("request_ids", "request_id"),
    "products": ("product_ids", "item_id"),
}


def id_set(df: pd.DataFrame, col: str) -> set:
    return {v.item() if hasattr(v, "item") else v for v in df[col].dropna()}
