"""Feast source tables built from the validated contract tables (pure pandas, no Feast import).

Three sources, one per feature view in ``feature_repo/features.py``; each is a directory of Parquet
parts under ``<data_dir>/sources/<view>/`` (a full build writes one part, each daily update appends one):

- ``item_features``: one row per item per snapshot, stamped at the snapshot's ``as_of``. A snapshot
  row holds the category path, brand, price bucket, exposure/click counts, the smoothed CTR
  ``quality = (clicks + k·m) / (exposures + k)`` (prior mean m, strength k) and the current SID.
  It is a serving view: the counts cover the whole log up to ``as_of``.
- ``user_profile``: one row per user, stamped at ``created_at``.
- ``user_recent``: one row per click event with the user's state *after* it (last N clicked SIDs and
  leaf categories, newest first). A click on the item at position r of a request's ``clicked`` list
  is stamped ``request.ts + (r + 1) · click_offset_ms``: strictly after the request, so a
  point-in-time join at a request's own timestamp never sees its clicks (Feast joins rows with
  ``event_timestamp <= entity timestamp``). Stamps are made strictly increasing per user.

``SourceState`` carries what a daily update needs to continue without re-reading history: the latest
item rows, each user's latest recent state, the categories and the frozen CTR prior.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from genrecall.data.schema import TS

ITEM_VIEW, PROFILE_VIEW, RECENT_VIEW = "item_features", "user_profile", "user_recent"
TIMESTAMP, CREATED = "event_timestamp", "created_timestamp"
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


@dataclass(frozen=True)
class FeaturesConfig:
    """Settings of the ``features`` stage (params.yaml ``features:``)."""

    recent_n: int = 10  # clicked SIDs/categories kept per user: UQ2SID's prompt context (paper §3), short prompts
    dedup_recent: bool = True  # a re-click moves the SID to the front instead of filling two of N slots
    click_offset_ms: int = 1000  # clicks are stamped this long after their request (per click rank); must be > 0
    quality_prior_strength: float = 20.0  # k pseudo-exposures: an item needs ~k views before its own CTR dominates
    quality_prior_ctr: float | None = None  # prior mean m; None = the log's CTR, frozen at the full build
    price_edges: tuple[float, ...] = (
        10.0,
        25.0,
        50.0,
        100.0,
        250.0,
        500.0,
    )  # bucket i = edges[i-1] <= price < edges[i]
    # How new rows reach the online store. "push": the latest new row per entity is written straight to
    # it (a daily update costs O(delta)). "materialize": Feast materialize over the rows' time window,
    # re-reading the Parquet parts through the offline store (cost grows with history), the right
    # choice with a Spark/warehouse offline store and batch engine.
    online_write: str = "push"

    def __post_init__(self) -> None:
        if self.recent_n < 1:
            raise ValueError("features.recent_n must be >= 1")
        if self.click_offset_ms <= 0:
            raise ValueError("features.click_offset_ms must be > 0: a click happens after its request")
        if self.quality_prior_strength < 0:
            raise ValueError("features.quality_prior_strength must be >= 0")
        if self.online_write not in ("push", "materialize"):
            raise ValueError("features.online_write must be 'push' or 'materialize'")
        if list(self.price_edges) != sorted(self.price_edges):
            raise ValueError("features.price_edges must be increasing")


_META = [(TIMESTAMP, TS), (CREATED, TS)]
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        *_META,
        ("category_id", pa.int64()),
        ("category_path", pa.string()),
        ("brand", pa.string()),
        ("price", pa.float64()),
        ("price_bucket", pa.int64()),
        ("exposures", pa.int64()),
        ("clicks", pa.int64()),
        ("quality", pa.float64()),
        ("sid", pa.string()),
        ("listed", pa.bool_()),
    ]
)
PROFILE_SCHEMA = pa.schema(
    [("user_id", pa.string()), *_META, ("gender", pa.string()), ("age_band", pa.string()), ("price_tier", pa.string())]
)
RECENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        *_META,
        ("recent_sids", pa.list_(pa.string())),
        ("recent_categories", pa.list_(pa.int64())),
        ("n_clicks", pa.int64()),
    ]
)
SCHEMAS = {ITEM_VIEW: ITEM_SCHEMA, PROFILE_VIEW: PROFILE_SCHEMA, RECENT_VIEW: RECENT_SCHEMA}
ITEM_COLUMNS = [n for n in ITEM_SCHEMA.names if n not in (TIMESTAMP, CREATED)]
RECENT_STATE_COLUMNS = ["user_id", "recent_sids", "recent_categories", "n_clicks", "last_ts"]


@dataclass
class SourceState:
    """What the next incremental update continues from (kept under ``<data_dir>/state/``)."""

    items: pd.DataFrame  # latest item row per item, ITEM_COLUMNS
    recent: pd.DataFrame  # latest recent state per user, RECENT_STATE_COLUMNS
    categories: pd.DataFrame  # the CATEGORIES table (for category paths of new items)
    prior_ctr: float
    as_of: pd.Timestamp = EPOCH
    meta: dict = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.items.to_parquet(d / "items.parquet", index=False)
        self.recent.to_parquet(d / "recent.parquet", index=False)
        self.categories.to_parquet(d / "categories.parquet", index=False)
        meta = {**self.meta, "prior_ctr": self.prior_ctr, "as_of": self.as_of.isoformat()}
        (d / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> SourceState:
        d = Path(directory)
        if not (d / "meta.json").exists():
            raise FileNotFoundError(f"no feature state at {d}: run the full `features` stage first")
        meta = json.loads((d / "meta.json").read_text())
        recent = pd.read_parquet(d / "recent.parquet")
        for col in ("recent_sids", "recent_categories"):
            recent[col] = [list(v) for v in recent[col]]
        return cls(
            items=pd.read_parquet(d / "items.parquet"),
            recent=recent,
            categories=pd.read_parquet(d / "categories.parquet"),
            prior_ctr=float(meta.pop("prior_ctr")),
            as_of=pd.Timestamp(meta.pop("as_of")),
            meta=meta,
        )


# ---- item snapshot -----------------------------------------------------------------------------


def exposure_stats(requests: pd.DataFrame) -> pd.DataFrame:
    """Per item: how often it was exposed and clicked in ``requests`` (columns item_id, exposures, clicks)."""

    def flat(column: str) -> pd.Series:
        parts = [np.asarray(v, dtype=np.int64) for v in requests[column] if v is not None]
        return pd.Series(np.concatenate(parts) if parts else np.empty(0, np.int64))

    exp, clk = flat("exposed"), flat("clicked")
    stats = pd.DataFrame({"exposures": exp.value_counts(), "clicks": clk.value_counts()}).fillna(0).astype(np.int64)
    return stats.rename_axis("item_id").reset_index()


def log_exposure_stats(data_dir: str | Path, *, before: pd.Timestamp | None = None) -> pd.DataFrame:
    """``exposure_stats`` of the ``requests`` table in ``data_dir`` (only requests before ``before``),
    counted in Arrow, sorted by item_id: no Python list per request, which on a 300k-request log cost
    seconds and about a GB of memory."""
    import pyarrow.compute as pc

    from genrecall.data.schema import REQUESTS

    filters = [("ts", "<", pa.scalar(pd.Timestamp(before), type=TS))] if before is not None else None
    table = pq.read_table(Path(data_dir) / REQUESTS.filename(), columns=["exposed", "clicked"], filters=filters)

    def counts(column: str) -> pd.Series:
        vc = pc.value_counts(pc.list_flatten(table[column]))
        return pd.Series(
            vc.field("counts").to_numpy(zero_copy_only=False).astype(np.int64),
            index=vc.field("values").to_numpy(zero_copy_only=False).astype(np.int64),
        )

    stats = pd.DataFrame({"exposures": counts("exposed"), "clicks": counts("clicked")}).fillna(0).astype(np.int64)
    return stats.sort_index().rename_axis("item_id").reset_index()


def log_ctr(stats: pd.DataFrame) -> float:
    """The log's overall click-through rate (clicks / exposures); 0.05 when nothing was exposed."""
    exposures = int(stats["exposures"].sum())
    return float(stats["clicks"].sum()) / exposures if exposures else 0.05


def quality_score(clicks: np.ndarray, exposures: np.ndarray, *, prior_ctr: float, strength: float) -> np.ndarray:
    """Smoothed CTR with a Beta prior: (clicks + k·m) / (exposures + k); the prior mean m for unseen items."""
    clicks, exposures = np.asarray(clicks, np.float64), np.asarray(exposures, np.float64)
    denom = exposures + strength
    return np.where(denom > 0, (clicks + strength * prior_ctr) / np.maximum(denom, 1e-12), prior_ctr)


def price_bucket(price: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bucket index 0..len(edges) of each price; -1 where the price is missing."""
    price = np.asarray(price, np.float64)
    out = np.searchsorted(np.asarray(edges, np.float64), np.nan_to_num(price), side="right").astype(np.int64)
    return np.where(np.isnan(price), -1, out)


def item_attributes(items: pd.DataFrame, categories: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Catalog attributes per item listed by ``as_of``: category id/path, brand, price, listed flag."""
    items = items[items["listed_at"].isna() | (items["listed_at"] <= as_of)]
    paths = dict(zip(categories["category_id"].astype(np.int64), categories["path"]))
    cat = items["category_id"].astype("Int64").fillna(-1).astype(np.int64)
    delisted = items["delisted_at"]
    return pd.DataFrame(
        {
            "item_id": items["item_id"].astype(np.int64).to_numpy(),
            "category_id": cat.to_numpy(),
            "category_path": [paths.get(int(c), "") or "" for c in cat],
            "brand": items["brand"].fillna("").astype(str).to_numpy(),
            "price": items["price"].astype(np.float64).to_numpy(),
            "listed": (delisted.isna() | (delisted > as_of)).to_numpy(dtype=bool),
        }
    )


def assemble_items(
    attrs: pd.DataFrame, stats: pd.DataFrame, sids: pd.DataFrame, *, cfg: FeaturesConfig, prior_ctr: float
) -> pd.DataFrame:
    """Item rows (ITEM_COLUMNS) from attributes, exposure stats and SID assignments (item_id, sid)."""
    df = attrs.merge(stats[["item_id", "exposures", "clicks"]], on="item_id", how="left")
    df = df.merge(sids[["item_id", "sid"]], on="item_id", how="left")
    df["exposures"] = df["exposures"].fillna(0).astype(np.int64)
    df["clicks"] = df["clicks"].fillna(0).astype(np.int64)
    df["sid"] = df["sid"].fillna("").astype(str)
    df["price_bucket"] = price_bucket(df["price"].to_numpy(), cfg.price_edges)
    strength = cfg.quality_prior_strength
    df["quality"] = quality_score(df["clicks"], df["exposures"], prior_ctr=prior_ctr, strength=strength)
    return df[ITEM_COLUMNS].sort_values("item_id", ignore_index=True)


def changed_items(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``new`` that are absent from ``old`` or differ from it in any column."""
    merged = new.merge(old, on="item_id", how="left", suffixes=("", "__old"), indicator=True)
    diff = merged["_merge"] == "left_only"
    for col in ITEM_COLUMNS[1:]:
        a, b = merged[col], merged[f"{col}__old"]
        diff |= ~((a == b) | (a.isna() & b.isna()))
    return new[diff.to_numpy()].reset_index(drop=True)


# ---- users ---------------------------------------------------------------------------------------


def profile_rows(users: pd.DataFrame) -> pd.DataFrame:
    """One ``user_profile`` row per user, stamped at ``created_at`` (epoch when unknown)."""
    ts = pd.to_datetime(users["created_at"], utc=True).fillna(EPOCH)
    return pd.DataFrame(
        {
            "user_id": users["user_id"].astype(str).to_numpy(),
            TIMESTAMP: ts.to_numpy(),
            "gender": users["gender"].fillna("u").to_numpy(),
            "age_band": users["age_band"].to_numpy(),
            "price_tier": users["price_tier"].to_numpy(),
        }
    )


def click_events(requests: pd.DataFrame, *, offset_ms: int) -> pd.DataFrame:
    """Clicks of logged-in users as events (user_id, ts, item_id), stamped after their request."""
    req = requests[requests["user_id"].notna()]
    users, ts, items, ranks = [], [], [], []
    for uid, t, clicked in zip(req["user_id"], req["ts"], req["clicked"]):
        for rank, item in enumerate(clicked if clicked is not None else ()):
            users.append(uid)
            ts.append(t)
            items.append(item)
            ranks.append(rank + 1)
    offset = pd.to_timedelta(np.asarray(ranks, np.int64) * offset_ms, unit="ms")
    events = pd.DataFrame(
        {
            "user_id": pd.Series(users, dtype=object),
            "ts": pd.to_datetime(pd.Series(ts), utc=True) + offset,
            "item_id": np.asarray(items, np.int64),
            "rank": np.asarray(ranks, np.int64),
        }
    )
    return events.sort_values(["user_id", "ts", "rank"], kind="stable", ignore_index=True)


def recent_rows(
    events: pd.DataFrame, items: pd.DataFrame, *, cfg: FeaturesConfig, state: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``user_recent`` rows (one per click, the state after it) and the updated per-user state.

    ``items`` maps item_id to its current ``sid`` and ``category_id``; clicks on items without a SID
    or category leave that list unchanged. ``state`` (RECENT_STATE_COLUMNS) continues earlier runs.
    """
    sid_of = dict(zip(items["item_id"].astype(np.int64), items["sid"]))
    cat_of = dict(zip(items["item_id"].astype(np.int64), items["category_id"].astype(np.int64)))
    current: dict[str, list] = {}
    if state is not None:
        for uid, s, c, n, last in state[RECENT_STATE_COLUMNS].itertuples(index=False):
            current[uid] = [list(s), list(c), int(n), pd.Timestamp(last)]
    step = pd.Timedelta(microseconds=1)
    out_user, out_ts, out_sids, out_cats, out_n = [], [], [], [], []
    n_recent = cfg.recent_n

    def push(seq: list, value: object) -> list:
        if cfg.dedup_recent and value in seq:
            seq = [v for v in seq if v != value]
        return [value, *seq][:n_recent]

    with Progress(transient=True, disable=len(events) < 50_000) as progress:
        task = progress.add_task("user_recent rows", total=len(events))
        for uid, ts, item in zip(events["user_id"], events["ts"], events["item_id"]):
            sids, cats, n, last = current.get(uid) or [[], [], 0, EPOCH - step]
            sid, cat = sid_of.get(int(item), ""), cat_of.get(int(item), -1)
            if sid:
                sids = push(sids, sid)
            if cat >= 0:
                cats = push(cats, int(cat))
            ts = max(ts, last + step)  # strictly increasing per user; only ever later, so never a leak
            current[uid] = [sids, cats, n + 1, ts]
            out_user.append(uid)
            out_ts.append(ts)
            out_sids.append(sids)
            out_cats.append(cats)
            out_n.append(n + 1)
            progress.advance(task)
    rows = pd.DataFrame(
        {
            "user_id": pd.Series(out_user, dtype=object),
            TIMESTAMP: pd.to_datetime(pd.Series(out_ts, dtype=object), utc=True),
            "recent_sids": out_sids,
            "recent_categories": out_cats,
            "n_clicks": np.asarray(out_n, np.int64),
        }
    )
    new_state = pd.DataFrame(
        [(u, s, c, n, t) for u, (s, c, n, t) in sorted(current.items())], columns=RECENT_STATE_COLUMNS
    )
    return rows, new_state


# ---- writing -------------------------------------------------------------------------------------


def write_part(
    df: pd.DataFrame, sources_dir: str | Path, view: str, *, part: str, created: pd.Timestamp
) -> Path | None:
    """Write ``df`` as ``<sources_dir>/<view>/part-<part>.parquet`` with the view's schema; None if empty."""
    if df.empty:
        return None
    schema = SCHEMAS[view]
    df = df.copy()
    df[CREATED] = created
    if TIMESTAMP not in df:
        df[TIMESTAMP] = created
    path = Path(sources_dir) / view / f"part-{part}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False), path)
    return path


def part_name(as_of: pd.Timestamp) -> str:
    """A sortable part name for a snapshot time, e.g. ``20240105T000000``."""
    return pd.Timestamp(as_of).tz_convert("UTC").strftime("%Y%m%dT%H%M%S")
