"""The validate stage's settings (params.yaml ``validate``): quarantine thresholds for ``validate.py``
and the lengths and ranges the checks in ``suites.py`` enforce. Its own module so that both can
import it (``validate`` runs the suites; the suites read these bounds).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # The day a daily delta holds, set by the daily ingest of a files/sql source (None: no such check): log
    # rows (requests.ts, price_events.ts) outside [day_start, day_end) arrived late for a day already ingested
    # (or early) and are quarantined as ``ts:in_day``, never merged into a day they do not belong to.
    day_start: str | None = None
    day_end: str | None = None
    relevance_min: float = 1.0  # Home Depot judgments are averages of 1-3 ratings
    relevance_max: float = 3.0

    def threshold(self, table: str) -> float:
        return float(self.per_table.get(table, self.max_bad_share))
