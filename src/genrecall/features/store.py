"""The Feast store, driven from Python: apply + materialize, point-in-time training frames, online lookups.

One data directory holds everything a store generates: ``registry.db``, ``online_store.db`` (SQLite)
and ``sources/<view>/part-*.parquet``. It defaults to ``<repo_path>/data`` (what ``feature_store.yaml``
says); any other directory is written into the config as a path relative to the repo when possible,
so a copied or moved project keeps working. Non-default stores (a Redis online store, a SQL registry)
configured in ``feature_store.yaml`` are left as they are; only the file/SQLite defaults follow
``data_dir``.

Feast 0.67 has no usage telemetry left (the ``FEAST_USAGE`` switch of older releases is set to False
anyway, in case of a downgrade); ``import feast`` resets the global warning filters, so they are
saved and restored around the import.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

os.environ.setdefault("FEAST_USAGE", "False")
_filters = list(warnings.filters)  # feast's import resets the warning filters: restore ours after
from feast import FeatureStore, RepoConfig  # noqa: E402

warnings.filters[:] = _filters  # type: ignore[index]  # typeshed types filters as a Sequence; it is a list

DEFAULT_REPO = Path("feature_repo")
PROFILE_FEATURES = ("gender", "age_band", "price_tier")
RECENT_FEATURES = ("recent_sids", "recent_categories", "n_clicks")


def _rel(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when both are local (so the project can move), else absolute."""
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return str(path.resolve())


def data_dir_of(repo_path: str | Path, data_dir: str | Path | None = None) -> Path:
    """The store's data directory: ``data_dir`` or ``<repo_path>/data``."""
    return Path(data_dir) if data_dir is not None else Path(repo_path) / "data"


def repo_config(repo_path: str | Path = DEFAULT_REPO, data_dir: str | Path | None = None) -> RepoConfig:
    """``feature_store.yaml`` with the file registry and SQLite online store moved into ``data_dir``.

    Other registry or online store types (sql, redis, ...) are kept exactly as configured.
    """
    repo = Path(repo_path)
    raw = yaml.safe_load(os.path.expandvars((repo / "feature_store.yaml").read_text()))
    if data_dir is not None:
        data = _rel(Path(data_dir), repo)
        registry = raw.get("registry", "data/registry.db")
        if isinstance(registry, str):
            raw["registry"] = f"{data}/registry.db" if "://" not in registry else registry
        elif registry.get("registry_type", "file") == "file" and "://" not in registry.get("path", ""):
            raw["registry"] = {**registry, "path": f"{data}/registry.db"}
        online = raw.get("online_store", {"type": "sqlite"})
        if isinstance(online, dict) and online.get("type", "sqlite") == "sqlite":
            raw["online_store"] = {**online, "path": f"{data}/online_store.db"}
    config = RepoConfig(**raw)
    config.repo_path = repo
    return config


def open_store(repo_path: str | Path = DEFAULT_REPO, data_dir: str | Path | None = None) -> FeatureStore:
    """A ``FeatureStore`` for ``repo_path`` whose registry and SQLite online store live in ``data_dir``."""
    return FeatureStore(repo_path=str(repo_path), config=repo_config(repo_path, data_dir))


def feast_objects(repo_path: str | Path, data_dir: str | Path | None = None) -> list:
    """The repo's entities, views and services (``features.build``), reading sources in ``data_dir``."""
    repo = Path(repo_path)
    spec = importlib.util.spec_from_file_location("genrecall_feature_repo", repo / "features.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no features.py in {repo}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(_rel(data_dir_of(repo, data_dir) / "sources", repo))


@dataclass(frozen=True)
class MaterializeResult:
    """What one apply/materialize call did."""

    start: pd.Timestamp
    end: pd.Timestamp
    views: tuple[str, ...]
    data_dir: Path


def apply(repo_path: str | Path, data_dir: str | Path | None = None) -> FeatureStore:
    """Register the repo's objects (idempotent) and return the store."""
    store = open_store(repo_path, data_dir)
    store.apply(feast_objects(repo_path, data_dir))
    return store


def current_store(repo_path: str | Path, data_dir: str | Path | None = None) -> FeatureStore:
    """The store, re-applied first if its registry names other sources than ``features.py`` builds now.

    The registry is derived from ``features.py`` + ``feature_store.yaml``; a registry written under
    another offline store type (or before the data directory moved) would make reads fail, so it is
    refreshed here, idempotently, instead.
    """
    store = open_store(repo_path, data_dir)
    wanted = {
        o.name: getattr(o.batch_source, "path", None)
        for o in feast_objects(repo_path, data_dir)
        if hasattr(o, "batch_source")
    }
    have = {v.name: getattr(v.batch_source, "path", None) for v in store.list_feature_views()}
    return store if have == wanted else apply(repo_path, data_dir)


def materialize(
    repo_path: str | Path, data_dir: str | Path | None, start_ts: pd.Timestamp, end_ts: pd.Timestamp
) -> MaterializeResult:
    """Load the latest row per entity with ``start_ts <= event_timestamp <= end_ts`` into the online store.

    For an incremental run, ``start_ts`` is the earliest new row: every entity with a new row then gets
    its true latest row, and the rest is left as it was.
    """
    store = open_store(repo_path, data_dir)
    views = tuple(sorted(v.name for v in store.list_feature_views()))
    start, end = pd.Timestamp(start_ts), pd.Timestamp(end_ts)
    store.materialize(start.to_pydatetime(), end.to_pydatetime(), feature_views=list(views))
    return MaterializeResult(start, end, views, data_dir_of(repo_path, data_dir))


def write_online(repo_path: str | Path, data_dir: str | Path | None, rows: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Write rows straight to the online store, per view: the latest row per entity wins.

    The daily update's "push" path: the new rows are already known, so the online store gets exactly
    them (cost grows with the delta) while the offline source keeps the full history.
    """
    store = open_store(repo_path, data_dir)
    written: dict[str, int] = {}
    for view_name, df in rows.items():
        if df.empty:
            written[view_name] = 0
            continue
        view = store.get_feature_view(view_name)
        keys = [c.name for c in view.entity_columns]
        latest = df.sort_values("event_timestamp", kind="stable").drop_duplicates(keys, keep="last")
        store.write_to_online_store(view_name, latest)
        written[view_name] = len(latest)
    return written


def apply_and_materialize(
    repo_path: str | Path,
    data_dir: str | Path | None = None,
    end_ts: pd.Timestamp | None = None,
    *,
    start_ts: pd.Timestamp | None = None,
) -> MaterializeResult:
    """Apply the repo, then materialize ``[start_ts, end_ts]`` (default: from the epoch up to now)."""
    apply(repo_path, data_dir)
    start = pd.Timestamp(start_ts) if start_ts is not None else pd.Timestamp("1970-01-01", tz="UTC")
    end = pd.Timestamp(end_ts) if end_ts is not None else pd.Timestamp.now(tz="UTC")
    return materialize(repo_path, data_dir, start, end)


# ---- training ------------------------------------------------------------------------------------


def training_frame(
    repo_path: str | Path, entity_df: pd.DataFrame, *, data_dir: str | Path | None = None, service: str = "training"
) -> pd.DataFrame:
    """Point-in-time user features for each row of ``entity_df`` (request_id, user_id, event_timestamp).

    One output row per input row, in input order; a row sees only feature rows stamped at or before
    its ``event_timestamp``. Missing values (anonymous/unknown users, no clicks yet) get the same
    defaults as ``FeatureClient`` so training and serving see one representation. Each view is joined
    on its own: Feast's file offline store drops an entity row whose key has only *later* rows in a
    view, which would otherwise lose that row's other features.
    """
    store = current_store(repo_path, data_dir)
    base = entity_df.reset_index(drop=True).copy()
    base["event_timestamp"] = pd.to_datetime(base["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    base["_row"] = np.arange(len(base))
    base["_user"] = [str(u) if u is not None and not pd.isna(u) else None for u in base["user_id"]]
    # Feast keeps one row per (user, timestamp): query the distinct pairs, then join back.
    keys = base[base["_user"].notna()][["_user", "event_timestamp"]].drop_duplicates()
    keys = keys.rename(columns={"_user": "user_id"})
    out = base
    for projection in store.get_feature_service(service).feature_view_projections:
        cols = [f.name for f in projection.features]
        refs = [f"{projection.name}:{c}" for c in cols]
        if keys.empty:
            joined = pd.DataFrame(columns=["user_id", "event_timestamp", *cols])
        else:
            joined = store.get_historical_features(entity_df=keys, features=refs).to_df()
        joined = joined[["user_id", "event_timestamp", *cols]].rename(columns={"user_id": "_user"})
        joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
        out = out.merge(joined, on=["_user", "event_timestamp"], how="left")
    out = out.sort_values("_row").drop(columns=["_row", "_user"]).reset_index(drop=True)
    return fill_user_defaults(out)


# ---- serving -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserFeatures:
    """A user's serving context; the defaults describe an anonymous or unknown user."""

    user_id: str | None = None
    known: bool = False  # the store had a profile or clicks for this user
    gender: str = "u"
    age_band: str = ""
    price_tier: str = ""
    recent_sids: tuple[str, ...] = ()  # newest first
    recent_categories: tuple[int, ...] = ()  # newest first
    n_clicks: int = 0


@dataclass(frozen=True)
class ItemFeatures:
    """Item features as parallel NumPy arrays (one entry per requested id, in request order)."""

    item_id: np.ndarray  # int64
    found: np.ndarray  # bool: the store knows the item
    category_id: np.ndarray  # int64, -1 = unknown
    category_path: np.ndarray  # object (str), "" = unknown
    brand: np.ndarray  # object (str)
    price: np.ndarray  # float64, nan = unknown
    price_bucket: np.ndarray  # int64, -1 = unknown
    quality: np.ndarray  # float64 smoothed CTR, 0.0 for unknown items (they sort last)
    sid: np.ndarray  # object (str), "" = none
    listed: np.ndarray  # bool
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # exposures, clicks

    def __len__(self) -> int:
        return len(self.item_id)


_USER_DEFAULTS = UserFeatures()
_ITEM_DEFAULTS: dict[str, Any] = {
    "category_id": -1,
    "category_path": "",
    "brand": "",
    "price": np.nan,
    "price_bucket": -1,
    "quality": 0.0,
    "sid": "",
    "listed": False,
    "exposures": 0,
    "clicks": 0,
}
_ITEM_DTYPES = {
    "category_id": np.int64,
    "price": np.float64,
    "price_bucket": np.int64,
    "quality": np.float64,
    "listed": bool,
    "exposures": np.int64,
    "clicks": np.int64,
}


def fill_user_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """Replace missing user features in ``df`` by the ``UserFeatures`` defaults (lists stay lists)."""
    df = df.copy()
    for name in PROFILE_FEATURES:
        if name in df:
            df[name] = df[name].where(df[name].notna(), getattr(_USER_DEFAULTS, name)).astype(object)
    for name in ("recent_sids", "recent_categories"):
        if name in df:
            df[name] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in df[name]]
    if "n_clicks" in df:
        df["n_clicks"] = df["n_clicks"].fillna(0).astype(np.int64)
    return df


class FeatureClient:
    """Online lookups for the service and the flows. Unknown keys get defaults, never an exception.

    >>> client = FeatureClient("feature_repo", "data/feast")
    >>> client.user_context("u000042").recent_sids
    >>> client.item_features([17, 99999]).quality
    """

    def __init__(self, repo_path: str | Path = DEFAULT_REPO, data_dir: str | Path | None = None) -> None:
        self.store = open_store(repo_path, data_dir)
        self._serving = self.store.get_feature_service("serving")
        self._items = self.store.get_feature_service("items")

    def user_context(self, user_id: str | None) -> UserFeatures:
        """The serving features of one user (defaults for None, "" or an unknown id)."""
        return self.user_contexts([user_id])[0]

    def user_contexts(self, user_ids: Sequence[str | None]) -> list[UserFeatures]:
        """Batch version of ``user_context``: one store round trip for all ids."""
        ids = [None if u is None or str(u) == "" else str(u) for u in user_ids]
        lookup = sorted({u for u in ids if u is not None})
        found: dict[str, UserFeatures] = {}
        if lookup:
            rows = self.store.get_online_features(features=self._serving, entity_rows={"user_id": lookup}).to_dict()
            for i, uid in enumerate(lookup):
                values = {k: rows[k][i] for k in (*PROFILE_FEATURES, *RECENT_FEATURES) if k in rows}
                if any(v is not None for v in values.values()):
                    found[uid] = _user(uid, values)
        return [found.get(u) or UserFeatures(user_id=u) for u in ids]  # type: ignore[arg-type]

    def item_features(self, item_ids: Iterable[int] | np.ndarray) -> ItemFeatures:
        """Features of ``item_ids`` (one store round trip); unknown ids get the defaults."""
        ids = np.asarray(list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids, dtype=np.int64)
        n = len(ids)
        cols: dict[str, np.ndarray] = {
            k: np.full(n, v, dtype=_ITEM_DTYPES.get(k, object)) for k, v in _ITEM_DEFAULTS.items()
        }
        found = np.zeros(n, dtype=bool)
        if n:
            uniq, inverse = np.unique(ids, return_inverse=True)
            rows = self.store.get_online_features(
                features=self._items, entity_rows={"item_id": [int(i) for i in uniq]}
            ).to_dict()
            for name, column in cols.items():
                values = rows.get(name, [None] * len(uniq))
                have = np.array([v is not None for v in values], dtype=bool)[inverse]
                filled = np.array([v if v is not None else _ITEM_DEFAULTS[name] for v in values], dtype=column.dtype)
                column[:] = filled[inverse]
                found |= have
        return ItemFeatures(
            item_id=ids,
            found=found,
            **{k: cols[k] for k in _ITEM_DEFAULTS if k not in ("exposures", "clicks")},
            extra={"exposures": cols["exposures"], "clicks": cols["clicks"]},
        )


def _user(uid: str, v: dict[str, Any]) -> UserFeatures:
    return UserFeatures(
        user_id=uid,
        known=True,
        gender=v.get("gender") or "u",
        age_band=v.get("age_band") or "",
        price_tier=v.get("price_tier") or "",
        recent_sids=tuple(v.get("recent_sids") or ()),
        recent_categories=tuple(int(c) for c in v.get("recent_categories") or ()),
        n_clicks=int(v.get("n_clicks") or 0),
    )
