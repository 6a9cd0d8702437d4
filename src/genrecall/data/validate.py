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

Rows a source held back at its boundary (``held.py``: an unparsable value, a late state row) come in
as ``held`` with their reasons; they are appended to the table's quarantine and counted in its report.

Duplicate keys keep the first occurrence and quarantine the later ones. Cross-table checks use the
*good* rows of the referenced table (validated in dependency order) plus any ``reference`` tables,
so the validated directory is referentially closed; a daily delta passes yesterday's validated
items/users as ``reference``. A check whose reference is absent is skipped and listed in the report.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data import schema as S
from genrecall.data.suites import PARSE_ERROR_COLUMN, PROVIDES, SUITES, Checks, Refs, id_set, is_null  # noqa: F401 (re-export)
from genrecall.data.validate_config import ValidateConfig

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX is imported: no analytics calls

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig

REASONS_COLUMN = "reasons"
SOURCE_ROW_COLUMN = "source_row"
ORDER = (
    "categories",
    "items",
    "price_events",
    "users",
    "requests",
    "ground_truth",
    "products",
    "judgments",
    "sid_assignments",
)  # dependency order for cross-table checks


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
        lines = [
            f"# Validation: {'PASS' if self.passed else 'FAIL'}",
            "",
            "| table | rows in | good | quarantined | bad share | max | result |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        lines.extend(
            f"| {t.table} | {t.rows_in} | {t.good} | {t.quarantined} | {t.bad_share:.2%} "
            f"| {t.max_bad_share:.2%} | {'pass' if t.passed else '**FAIL**'} |"
            for t in self.tables.values()
        )
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
        parts = [
            f"{t.table}: {t.quarantined}/{t.rows_in} rows bad ({t.bad_share:.1%} > {t.max_bad_share:.1%}"
            f"; top reasons {dict(Counter(t.reasons).most_common(3))})"
            for t in report.failures()
        ]
        super().__init__("validation failed for " + "; ".join(parts))


@dataclass
class ValidationResult:
    """Good rows (contract-typed), quarantined rows (as they came + reasons + source_row), report."""

    good: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    report: ValidationReport


# ---------------------------------------------------------------- running GX and splitting rows
def _gx_context() -> Any:
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _run_suite(ctx: Any, name: str, checks: Checks) -> list[list[str]]:
    """Run the table's suite in GX; the list of broken reasons for every row."""
    asset = ctx.data_sources.add_pandas(f"genrecall_{name}").add_dataframe_asset(name)
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=checks.expectations))
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=asset.add_batch_definition_whole_dataframe("whole"), suite=suite)
    )
    result = vd.run(batch_parameters={"dataframe": checks.gx}, result_format={"result_format": "COMPLETE"})
    reasons: list[list[str]] = [[] for _ in range(checks.n)]
    for r in result.results:
        reason = r.expectation_config.meta["reason"]
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX could not run {reason} on {name}: {r.exception_info}")
        for i in r.result.get("unexpected_index_list") or []:
            reasons[int(i)].append(reason)
    return reasons


def _refs(reference: Mapping[str, pd.DataFrame]) -> Refs:
    refs: Refs = {k: None for k, _ in PROVIDES.values()}
    for table, (key, col) in PROVIDES.items():
        if table in reference:
            refs[key] = id_set(reference[table], col)
    return refs


def _merge_ref(refs: Refs, key: str, ids: set) -> None:
    refs[key] = ids | (refs[key] or set())


def validate_tables(
    tables: Mapping[str, pd.DataFrame],
    cfg: ValidateConfig | None = None,
    reference: Mapping[str, pd.DataFrame] | None = None,
    held: Mapping[str, pd.DataFrame] | None = None,
) -> ValidationResult:
    """Validate raw tables (by contract name) against their suites; see the module docstring.

    ``reference``: already-validated tables (e.g. yesterday's items/users) that cross-table checks may
    point into, on top of this batch's own good rows. ``held``: rows a source held back (``held.py``),
    with a ``reasons`` column; a table may have held rows and no other rows.
    """
    cfg, held = cfg or ValidateConfig(), held or {}
    unknown = sorted((set(tables) | set(held)) - set(SUITES))
    if unknown:
        raise ValueError(f"no contract for table(s) {unknown}; known: {sorted(SUITES)}")
    refs = _refs(reference or {})
    ctx = _gx_context()
    good, quarantine, reports = {}, {}, {}
    for name in [t for t in ORDER if t in tables or t in held]:
        spec = S.ALL_TABLES[name]
        checks = Checks(spec, tables[name] if name in tables else pd.DataFrame(columns=spec.columns))
        SUITES[name](checks, refs, cfg)
        row_reasons = _run_suite(ctx, name, checks) if checks.n else []
        bad = np.array([bool(r) for r in row_reasons], dtype=bool)
        good[name] = checks.data.loc[~bad, spec.columns].reset_index(drop=True)
        q = checks.raw.loc[bad].copy()
        q.insert(0, SOURCE_ROW_COLUMN, np.flatnonzero(bad).astype("int64"))
        q[REASONS_COLUMN] = [r for r in row_reasons if r]
        extra = held.get(name)
        if extra is not None and len(extra):
            row_reasons = [*row_reasons, *extra[REASONS_COLUMN]]
            q = pd.concat([q, extra], ignore_index=True)
        quarantine[name] = q.reset_index(drop=True)
        reports[name] = _report(name, row_reasons, len(good[name]), len(quarantine[name]), cfg, checks.skipped)
        if name in PROVIDES:
            key, col = PROVIDES[name]
            _merge_ref(refs, key, id_set(good[name], col))
    return ValidationResult(good=good, quarantine=quarantine, report=ValidationReport(reports))


def _report(
    name: str, row_reasons: list[list[str]], good: int, quarantined: int, cfg: ValidateConfig, skipped: list[str]
) -> TableReport:
    """One table's report; ``row_reasons`` has one entry per row in (checked and held)."""
    n = len(row_reasons)
    if good + quarantined != n or quarantined != sum(bool(r) for r in row_reasons):  # no silent drop
        raise RuntimeError(f"{name}: {n} rows in != {good} good + {quarantined} quarantined")
    share = quarantined / n if n else 0.0
    return TableReport(
        table=name,
        rows_in=n,
        good=good,
        quarantined=quarantined,
        bad_share=share,
        max_bad_share=cfg.threshold(name),
        passed=share <= cfg.threshold(name),
        reasons=dict(sorted(Counter(r for rs in row_reasons for r in rs).items())),
        skipped=skipped,
    )


def quarantine_to_arrow(df: pd.DataFrame) -> pa.Table:
    """A quarantine frame as Arrow; columns whose raw values mix types are stored as strings."""
    arrays, names = [], []
    for col in df.columns:
        values = df[col]
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            arr = pa.array([None if is_null(v) else str(v) for v in values], type=pa.string())
        arrays.append(arr)
        names.append(str(col))
    if REASONS_COLUMN in df.columns:
        arrays[names.index(REASONS_COLUMN)] = pa.array(list(df[REASONS_COLUMN]), type=pa.list_(pa.string()))
    return pa.Table.from_arrays(arrays, names=names)
