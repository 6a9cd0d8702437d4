"""Small array/table helpers shared by the marketplace simulator (``marketplace``, ``catalog``,
``traffic``): per-(seed, day, stream) RNGs, microsecond timestamps, table conforming, list padding and
vectorised sampling. Internal to ``genrecall.data``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from genrecall.data.market_config import NEVER, MarketplaceConfig
from genrecall.data.schema import TableSpec


def day_rng(cfg: MarketplaceConfig, day: int, stream: int) -> np.random.Generator:
    """The random stream for (seed, day, purpose); day -1 is the initial state."""
    return np.random.default_rng([cfg.seed, day + 1, stream])


def to_us(col: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch; NaT (not delisted) becomes NEVER."""
    v = pd.DatetimeIndex(col).as_unit("us").asi8.copy()
    v[v == np.iinfo(np.int64).min] = NEVER
    return v


def to_ts(us: np.ndarray) -> pd.arrays.DatetimeArray:
    """int64 microseconds (NEVER = NaT) as a UTC timestamp array."""
    v = np.asarray(us, dtype=np.int64).astype("datetime64[us]")
    v[np.asarray(us) == NEVER] = np.datetime64("NaT")
    return pd.DatetimeIndex(v).tz_localize("UTC").array


def conform(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """``df`` with exactly the spec's columns and types (lists as Arrow-backed columns, nullable ints)."""
    return arrow_to_pandas(pa.Table.from_pandas(df[spec.columns], schema=spec.schema, preserve_index=False))


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    return arrow_to_pandas(spec.schema.empty_table())


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    mapper = {pa.int32(): pd.Int32Dtype()}
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else mapper.get(t))


def concat_rows(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Row-append with one Arrow chunk per list column (so the Parquet bytes never depend on history)."""
    out = pd.concat([a, b], ignore_index=True)
    for c in out.columns:
        if isinstance(out[c].dtype, pd.ArrowDtype):
            arr = pa.array(out[c].array)
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            out[c] = pd.arrays.ArrowExtensionArray(arr)
    return out


def flatten_lists(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (all values, index of the row each value came from)."""
    arr = pa.array(col.array) if isinstance(col.dtype, pd.ArrowDtype) else pa.array(list(col))
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return (
        arr.flatten().to_numpy(zero_copy_only=False),
        pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64),
    )


def pad_lists(col: pd.Series, width: int, index: pd.Index | None) -> np.ndarray:
    """A list column as an (n, width) int matrix padded with -1; ``index`` maps values to codes."""
    values, parent = flatten_lists(col)
    out = np.full((len(col), width), -1, dtype=np.int64)
    if len(values):
        codes = index.get_indexer(values) if index is not None else values.astype(np.int64)
        pos = np.arange(len(values)) - np.searchsorted(parent, parent)
        ok = pos < width
        out[parent[ok], pos[ok]] = codes[ok]
    return out


def sample_rows(rng: np.random.Generator, w: np.ndarray) -> np.ndarray:
    """One column index per row of a non-negative weight matrix (rows must not be all zero)."""
    cdf = np.cumsum(w, axis=1)
    u = rng.random(len(w)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(1), w.shape[1] - 1)


def pool_draw(keys: np.ndarray, want: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each wanted key, a uniform random position among the positions whose key is equal."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start, end = np.searchsorted(sk, want, "left"), np.searchsorted(sk, want, "right")
    return order[np.minimum(start + (u * (end - start)).astype(np.int64), len(order) - 1)]


def repeats_left(C: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """True where a row repeats an item already seen further left in the row."""
    key = np.where(valid, C, -1 - np.arange(C.shape[1])[None])  # invalid cells never collide
    order = np.argsort(key, axis=1, kind="stable")
    s = np.take_along_axis(key, order, 1)
    d = np.zeros_like(valid)
    d[:, 1:] = s[:, 1:] == s[:, :-1]
    out = np.zeros_like(valid)
    np.put_along_axis(out, order, d, 1)
    return out


def visible_share(match: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Share of the query's visible attributes an item matches (1 where the query shows none)."""
    n_vis = visible.sum(1)[:, None]
    hit = (match & visible[:, None, :]).sum(-1)
    return np.where(n_vis > 0, hit / np.maximum(n_vis, 1), 1.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def list_column(values: np.ndarray, mask: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Row-wise ``values[mask]`` as an Arrow list<int64> column, keeping the column order."""
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    return pd.arrays.ArrowExtensionArray(
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[mask], pa.int64()))
    )


def shop_price(p: np.ndarray) -> np.ndarray:
    """Round to shop prices on a 50-cent grid ending in .49 / .99 (never below 0.99)."""
    return np.round(np.ceil(np.maximum(p, 1.0) * 2) / 2 - 0.01, 2)
