"""The validate stage: contract tables in ``in_dir`` -> validated tables + quarantine + report.

Thin on purpose: read whatever contract tables are present (marketplace tables or judged
products/judgments), call ``genrecall.data.validate.validate_tables``, write the outputs, and raise
``ValidationError`` (after writing everything, so the report can be read) when a table's bad share
passes its threshold. The daily rebuild calls the same function on a day's delta with the validated
tables of earlier days as ``reference_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from genrecall.data import schema as S
from genrecall.data.held import read_held
from genrecall.data.validate import (
    ORDER,
    PROVIDES,
    ValidateConfig,
    ValidationError,
    ValidationReport,
    quarantine_to_arrow,
    validate_tables,
)


def read_raw(path: str | Path) -> pd.DataFrame:
    """A Parquet table as it is on disk (no schema enforced); list cells become Python lists, except
    cells of integer lists, which stay NumPy int arrays (typed, so no element can be anything else;
    validation then checks them whole instead of element by element). A file that is not readable
    Parquet (truncated, overwritten) fails with its path: whole-file damage cannot be quarantined."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e}); re-export it, nothing was validated") from e
    df = table.to_pandas()
    for f in table.schema:
        if pa.types.is_list(f.type) and not pa.types.is_integer(f.type.value_type):
            df[f.name] = [list(v) if v is not None else None for v in df[f.name]]
    return df


def present_tables(directory: str | Path) -> list[str]:
    """Names of the contract tables that have a Parquet file in ``directory``, in dependency order."""
    return [n for n in ORDER if (Path(directory) / S.ALL_TABLES[n].filename()).exists()]


def validate(
    cfg: ValidateConfig,
    in_dir: str | Path,
    out_dir: str | Path,
    quarantine_dir: str | Path,
    report_path: str | Path,
    *,
    reference_dir: str | Path | None = None,
    raise_on_fail: bool = True,
) -> ValidationReport:
    """Validate every contract table in ``in_dir``; write good rows to ``out_dir`` (contract schema),
    bad rows to ``quarantine_dir/<table>.parquet`` (raw columns + source_row + reasons), and the
    report to ``report_path`` (JSON) plus a markdown summary beside it (``.md``).

    ``reference_dir``: validated tables that cross-table checks may point into (a daily delta's
    known items/users). Rows a source held back beside the tables (``in_dir/rejected/``, ``held.py``)
    join their table's quarantine. Raises ``ValidationError`` when a table fails its threshold, unless
    ``raise_on_fail`` is False.
    """
    held = read_held(in_dir)
    names = [n for n in ORDER if n in present_tables(in_dir) or n in held]
    if not names:
        raise FileNotFoundError(f"no contract tables ({', '.join(ORDER)}) found in {in_dir}")
    reference = {}
    if reference_dir is not None:
        # cross-table checks only need the id column each table provides (suites.PROVIDES)
        reference = {
            n: S.read_table(S.ALL_TABLES[n], reference_dir, columns=[PROVIDES[n][1]])
            for n in present_tables(reference_dir)
            if n in PROVIDES
        }

    with Progress(transient=True) as progress:
        task = progress.add_task("validate: reading", total=len(names) + 2)
        tables = {}
        for n in names:
            path = Path(in_dir) / S.ALL_TABLES[n].filename()
            tables[n] = read_raw(path) if path.exists() else pd.DataFrame(columns=S.ALL_TABLES[n].columns)
            progress.advance(task)
        progress.update(task, description=f"validate: checking {', '.join(names)}")
        result = validate_tables(tables, cfg, reference=reference, held=held)
        progress.advance(task)
        progress.update(task, description="validate: writing")
        quarantine_dir = Path(quarantine_dir)
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        for n in names:
            S.write_table(result.good[n], S.ALL_TABLES[n], out_dir)
            pq.write_table(quarantine_to_arrow(result.quarantine[n]), quarantine_dir / S.ALL_TABLES[n].filename())
        progress.advance(task)

    report = result.report
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    report_path.with_suffix(".md").write_text(report.to_markdown())
    if raise_on_fail and not report.passed:
        raise ValidationError(report)
    return report
