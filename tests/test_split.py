from __future__ import annotations

import pandas as pd
import pytest

from genrecall.data.split import time_split


def _log(days: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"request_id": range(len(days)), "ts": pd.to_datetime(days, utc=True)})


def test_last_days_are_test_and_nothing_is_lost() -> None:
    log = _log(["2026-01-01 10:00", "2026-01-02 23:59", "2026-01-03 00:00", "2026-01-04 08:00"])
    split = time_split(log, test_days=2)
    assert split.cutoff == pd.Timestamp("2026-01-03", tz="UTC")
    assert split.train["request_id"].tolist() == [0, 1]
    assert split.test["request_id"].tolist() == [2, 3]
    assert split.train["ts"].max() < split.cutoff <= split.test["ts"].min()


def test_too_short_log_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="fewer than"):
        time_split(_log(["2026-01-01", "2026-01-02"]), test_days=2)
    with pytest.raises(ValueError, match="empty"):
        time_split(_log([]), test_days=1)
