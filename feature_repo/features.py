"""genrecall feature definitions: entities, sources, feature views and feature services.

Three views, two entities:

- ``item_features`` (entity ``item``): what serving needs to expand a SID and order its items:
  category path, brand, price bucket, a smoothed-CTR quality score and the item's current SID.
  One row per item per snapshot (the initial build, then each daily update that changed it).
- ``user_profile`` (entity ``user``): gender, age band, price tier, known from the user's creation.
- ``user_recent`` (entity ``user``): the last N clicked SIDs and categories. One row per click event
  holding the state *after* that click, timestamped strictly after the request that showed the item,
  so a point-in-time join at a request's timestamp sees only earlier clicks.

Feature services: ``training`` and ``serving`` select the same user features (one definition, no
training/serving skew); ``items`` selects the item view for the service's cluster expansion.

Where the source Parquet lives: ``source_dir``, a path relative to this repo or absolute. ``feast apply``
from the CLI reads it from
``$GENRECALL_FEAST_DATA`` (default ``data``, i.e. ``feature_repo/data/sources``); genrecall's own
code calls ``build(source_dir)`` with the data directory it was given (genrecall.features.store).
``$GENRECALL_FEAST_SOURCE`` follows ``offline_store.type``: ``duckdb`` (default), ``file`` or ``spark``.
Nothing here touches the data, so importing this file is cheap and safe.
"""

from __future__ import annotations

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Bool, Float64, Int64, String

# View and source names, shared with genrecall.features (they must not drift apart).
ITEM_VIEW = "item_features"
PROFILE_VIEW = "user_profile"
RECENT_VIEW = "user_recent"
TIMESTAMP = "event_timestamp"
CREATED = "created_timestamp"
NO_TTL = timedelta(0)  # 0 = rows never expire: an item's SID or a user's last clicks stay valid until replaced

item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A catalog item.")
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shopper; anonymous requests have no user and get no user features.",
)


def _source(source_dir: str, view: str, kind: str):
    # A directory of Parquet parts: the daily update appends a part instead of rewriting history.
    common = {"name": f"{view}_source", "timestamp_field": TIMESTAMP, "created_timestamp_column": CREATED}
    if kind == "duckdb":  # offline_store type: duckdb reads the parts by glob, relative to the process, not
        #                   the repo, so the path is made absolute here (at apply time, not in git)
        root = (
            source_dir
            if os.path.isabs(source_dir)
            else os.path.join(os.path.dirname(os.path.abspath(__file__)), source_dir)
        )
        return FileSource(
            path=os.path.join(os.path.normpath(root), view, "*.parquet"), file_format=ParquetFormat(), **common
        )
    if kind == "spark":  # offline_store type: spark (docs/FEAST.md); Spark reads the same Parquet layout
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(path=f"{source_dir}/{view}", file_format="parquet", **common)
    if kind != "file":
        raise ValueError(f"GENRECALL_FEAST_SOURCE must be 'duckdb', 'file' or 'spark', not {kind!r}")
    return FileSource(path=f"{source_dir}/{view}", **common)


def build(source_dir: str, *, kind: str | None = None) -> list:
    """All Feast objects of the repo, reading sources under ``source_dir/<view>/``.

    ``kind`` must match ``offline_store.type`` in feature_store.yaml: "duckdb" (the default: Parquet
    through Feast's DuckDB offline store), "file" (Parquet through the Dask file offline store) or
    "spark" (SparkSource over the same Parquet); default ``$GENRECALL_FEAST_SOURCE`` or "duckdb".
    """
    kind = kind or os.environ.get("GENRECALL_FEAST_SOURCE", "duckdb")
    item_features = FeatureView(
        name=ITEM_VIEW,
        entities=[item],
        ttl=NO_TTL,
        schema=[
            Field(name="category_id", dtype=Int64, description="leaf category; -1 = unknown"),
            Field(name="category_path", dtype=String, description='"Home > Kitchen > Kettles"; "" = unknown'),
            Field(name="brand", dtype=String),
            Field(name="price", dtype=Float64),
            Field(name="price_bucket", dtype=Int64, description="index into features.price_edges"),
            Field(name="exposures", dtype=Int64, description="times shown in logged requests"),
            Field(name="clicks", dtype=Int64, description="times clicked in logged requests"),
            Field(name="quality", dtype=Float64, description="smoothed CTR (Beta prior)"),
            Field(name="sid", dtype=String, description='current SID "c1-c2-c3-s"; "" = none'),
            Field(name="listed", dtype=Bool, description="false once delisted"),
        ],
        online=True,
        source=_source(source_dir, ITEM_VIEW, kind),
        tags={"owner": "genrecall"},
    )
    user_profile = FeatureView(
        name=PROFILE_VIEW,
        entities=[user],
        ttl=NO_TTL,
        schema=[
            Field(name="gender", dtype=String, description='"f", "m", "u"'),
            Field(name="age_band", dtype=String, description='"18-24", "25-34", ...'),
            Field(name="price_tier", dtype=String, description='"low", "mid", "high"'),
        ],
        online=True,
        source=_source(source_dir, PROFILE_VIEW, kind),
        tags={"owner": "genrecall"},
    )
    user_recent = FeatureView(
        name=RECENT_VIEW,
        entities=[user],
        ttl=NO_TTL,
        schema=[
            Field(name="recent_sids", dtype=Array(String), description="last N clicked SIDs, newest first"),
            Field(name="recent_categories", dtype=Array(Int64), description="last N clicked categories, newest first"),
            Field(name="n_clicks", dtype=Int64, description="clicks so far"),
        ],
        online=True,
        source=_source(source_dir, RECENT_VIEW, kind),
        tags={"owner": "genrecall"},
    )
    training = FeatureService(name="training", features=[user_profile, user_recent])
    serving = FeatureService(name="serving", features=[user_profile, user_recent])
    items = FeatureService(name="items", features=[item_features])
    return [item, user, item_features, user_profile, user_recent, training, serving, items]


# Module-level objects for `feast apply` / `feast plan` from the CLI.
_objects = build(os.path.join(os.environ.get("GENRECALL_FEAST_DATA", "data"), "sources"))
item_features, user_profile, user_recent, training, serving, items = _objects[2:]
