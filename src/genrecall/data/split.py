"""Train/test splits of the search log: by time for the marketplace (train on earlier days, test
on later days), so no model ever learns from a request it is evaluated on or from the future.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    """Requests before ``cutoff`` train; requests at or after it test."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp


def time_split(requests: pd.DataFrame, test_days: int = 2) -> TimeSplit:
    """Hold out the last ``test_days`` calendar days (UTC) of the log as the test period."""
    if test_days < 1:
        raise ValueError("test_days must be >= 1")
    if requests.empty:
        raise ValueError("cannot split an empty search log")
    ts = pd.to_datetime(requests["ts"], utc=True)
    last_day = ts.max().normalize()
    cutoff = last_day - pd.Timedelta(days=test_days - 1)
    if cutoff <= ts.min():
        raise ValueError(f"the log spans fewer than {test_days + 1} days; lower test_days or generate more days")
    is_test = ts >= cutoff
    return TimeSplit(
        train=requests[~is_test].reset_index(drop=True),
        test=requests[is_test].reset_index(drop=True),
        cutoff=cutoff,
    )
