"""Feast features on a real store (SQLite online, Parquet offline) in a temp dir, built from tiny hand-made tables.

Day 1: six items, three users, five requests. Day 2 (update): a new item joining an existing SID, a
new user, two more requests. The time line of user u1 on day 1:
  10:00 r1 shows 101,102,103, u1 clicks 101 (stamped 10:00:01)
  11:00 r2 shows 102,104,     u1 clicks 104 (11:00:01) then 102 (11:00:02)
  14:00 r5 shows 103,         no click
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genrecall.data.marketplace as mp
from genrecall.config import from_dict
from genrecall.data import schema as S
from genrecall.features.sources import SCHEMAS, FeaturesConfig, quality_score
from genrecall.features.store import FeatureClient, UserFeatures, open_store, training_frame
from genrecall.pipeline.features import features, update_features

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
SID = {101: "0-1-2-0", 102: "0-1-3-0", 103: "1-0-0-0", 104: "1-2-0-0", 105: "2-0-0-0", 106: "2-1-0-0"}
# Hand-made tests go through Feast's materialize; the marketplace test covers the default "push".
CFG = FeaturesConfig(recent_n=3, quality_prior_strength=10.0, quality_prior_ctr=0.1, online_write="materialize")


def _items(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["item_id", "category_id", "price", "listed_at"])
    return df.assign(
        title=[f"item {i}" for i in df["item_id"]],
        brand="acme",
        color=None,
        material=None,
        size=None,
        style=None,
        category_id=df["category_id"].astype("Int32"),
        delisted_at=pd.NaT,
        updated_at=df["listed_at"],
    )


def _requests(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["request_id", "ts", "user_id", "exposed", "clicked"])
    return df.assign(query="kettle", query_kind="synonym", purchased=[[] for _ in range(len(df))])


def _users(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "gender", "age_band", "price_tier", "created_at"])
    return df.assign(brand_affinity=[[] for _ in range(len(df))], category_interests=[[] for _ in range(len(df))])


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed list columns (as the marketplace holds them) as Python lists, for write_table."""
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.ArrowDtype):
            df[c] = pd.Series(df[c].tolist(), dtype=object, index=df.index)
    return df


def _stand_in_sids(items: pd.DataFrame) -> pd.DataFrame:
    cat = items["category_id"].astype("Int64").fillna(0).astype(np.int64).to_numpy()
    ids = items["item_id"].to_numpy(np.int64)
    return _sids(list(ids), {int(i): f"{c}-{i % 4}-0-0" for i, c in zip(ids, cat)})


def _sids(ids: list[int], sid: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": ids, "sid": [sid[i] for i in ids], "codes": [list(S.sid_from_str(sid[i])) for i in ids]}
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    root = tmp_path_factory.mktemp("feast")
    shutil.copytree(repo_root / "feature_repo", root / "repo", ignore=shutil.ignore_patterns("data", "__pycache__"))
    cats = pd.DataFrame(
        {
            "category_id": [1, 11, 12, 13],
            "parent_id": [None, 1, 1, 1],
            "level": [1, 3, 3, 3],
            "name": ["Home", "Kettles", "Mugs", "Pans"],
            "path": ["Home", "Home > Kettles", "Home > Mugs", "Home > Pans"],
            "noun": [None, "kettle", "mug", "pan"],
            "synonyms": [[], [], [], []],
        }
    ).astype({"parent_id": "Int32"})
    day0 = T("2024-01-01")
    items = _items(
        [
            (101, 11, 30.0, day0),
            (102, 11, 9.0, day0),
            (103, 12, 60.0, day0),
            (104, 12, 120.0, day0),
            (105, 13, 600.0, day0),
            (106, None, 20.0, day0),
        ]
    )
    users = _users(
        [
            ("u1", "f", "25-34", "mid", T("2023-12-01")),
            ("u2", "m", "18-24", "low", T("2023-12-01")),
            ("u3", "f", "35-44", "high", T("2023-12-01")),
        ]
    )
    reqs = _requests(
        [
            (1, T("2024-01-02 10:00"), "u1", [101, 102, 103], [101]),
            (2, T("2024-01-02 11:00"), "u1", [102, 104], [104, 102]),
            (3, T("2024-01-02 12:00"), "u2", [101, 105], [105]),
            (4, T("2024-01-02 13:00"), None, [101], [101]),
            (5, T("2024-01-02 14:00"), "u1", [103], []),
        ]
    )
    data, sid_dir = root / "validated", root / "sid"
    for df, spec in ((cats, S.CATEGORIES), (items, S.ITEMS), (users, S.USERS), (reqs, S.REQUESTS)):
        S.write_table(df, spec, data)
    S.write_table(_sids(list(SID), SID), S.SID_ASSIGNMENTS, sid_dir)
    result = features(CFG, data, sid_dir, root / "repo", root / "feast", end_ts=T("2024-01-02 23:59:59"))
    return {"root": root, "repo": root / "repo", "feast": root / "feast", "result": result}


@pytest.fixture(scope="module")
def client(built: dict) -> FeatureClient:
    return FeatureClient(built["repo"], built["feast"])


def test_feature_views_match_source_schemas(built: dict) -> None:
    store = open_store(built["repo"], built["feast"])
    for view in store.list_feature_views():
        names = [f.name for f in view.features]
        assert set(names) <= set(SCHEMAS[view.name].names), view.name
    assert {s.name for s in store.list_feature_services()} == {"training", "serving", "items"}
    # Generated paths stay relative, so the project can be copied or moved.
    assert not Path(store.config.online_store.path).is_absolute()


def test_training_frame_is_point_in_time_correct(built: dict) -> None:
    entity = pd.DataFrame(
        {
            "request_id": [5, 1, 2, 20, 21, 3, 4, 9],
            "user_id": ["u1", "u1", "u1", "u1", "u1", "u2", None, "nobody"],
            "event_timestamp": [
                T("2024-01-02 14:00"),
                T("2024-01-02 10:00"),
                T("2024-01-02 11:00"),
                T("2024-01-02 11:00"),
                T("2024-01-02 10:00:00.5"),
                T("2024-01-02 12:00"),
                T("2024-01-02 13:00"),
                T("2024-01-02 13:00"),
            ],
        }
    )
    df = training_frame(built["repo"], entity, data_dir=built["feast"]).set_index("request_id")
    assert list(df.index) == [5, 1, 2, 20, 21, 3, 4, 9]  # one row per input row, input order
    # r1: no click before it, but the profile is there (Feast's file store would drop this row).
    assert df.loc[1, "recent_sids"] == [] and df.loc[1, "gender"] == "f" and df.loc[1, "n_clicks"] == 0
    # r2 sees the 10:00 click and none of its own clicks (104, 102); so does a duplicate (user, ts) row.
    assert df.loc[2, "recent_sids"] == [SID[101]] and df.loc[20, "recent_sids"] == [SID[101]]
    assert df.loc[21, "recent_sids"] == []  # half a second after r1: its click (stamped +1 s) not yet made
    # r5 sees all three earlier clicks, newest first (102 was clicked after 104 in r2).
    assert df.loc[5, "recent_sids"] == [SID[102], SID[104], SID[101]]
    assert df.loc[5, "recent_categories"] == [11, 12] and df.loc[5, "n_clicks"] == 3
    assert df.loc[3, "recent_sids"] == [] and df.loc[3, "price_tier"] == "low"  # u2's own click is later
    for anon in (4, 9):  # anonymous and unknown users: defaults, no exception
        assert df.loc[anon, "recent_sids"] == [] and df.loc[anon, "gender"] == "u" and df.loc[anon, "n_clicks"] == 0


def test_online_user_context(client: FeatureClient) -> None:
    u1 = client.user_context("u1")
    assert u1.known and (u1.gender, u1.age_band, u1.price_tier) == ("f", "25-34", "mid")
    assert u1.recent_sids == (SID[102], SID[104], SID[101]) and u1.n_clicks == 3
    assert client.user_context("u3") == UserFeatures("u3", True, "f", "35-44", "high")  # profile, no clicks
    for unknown in ("nobody", None, ""):
        ctx = client.user_context(unknown)
        assert not ctx.known and ctx.recent_sids == () and ctx.gender == "u"
    batch = client.user_contexts(["u2", None, "u1", "u2"])
    assert [c.user_id for c in batch] == ["u2", None, "u1", "u2"] and batch[0].recent_sids == (SID[105],)


def test_online_item_features(client: FeatureClient) -> None:
    f = client.item_features(np.array([101, 999, 106, 101]))
    assert f.found.tolist() == [True, False, True, True]
    assert f.sid.tolist() == [SID[101], "", SID[106], SID[101]]
    assert f.category_path.tolist() == ["Home > Kettles", "", "", "Home > Kettles"]
    assert f.category_id.tolist() == [11, -1, -1, 11]
    assert f.price_bucket.tolist() == [2, -1, 1, 2] and np.isnan(f.price[1])
    # 101: exposed in r1, r3, r4 and clicked in r1, r4 (anonymous requests count for quality).
    assert f.extra["exposures"][0] == 3 and f.extra["clicks"][0] == 2
    assert f.quality[0] == pytest.approx(float(quality_score([2], [3], prior_ctr=0.1, strength=10.0)[0]))
    assert f.quality[1] == 0.0 and f.listed.tolist() == [True, False, True, True]
    assert len(client.item_features([])) == 0


def test_update_features_makes_new_items_and_behaviour_fresh(built: dict, tmp_path: Path) -> None:
    # Work on a copy (also shows the generated store survives a move: its paths are relative).
    root = tmp_path / "moved"
    shutil.copytree(built["root"], root)
    delta, sid_dir = root / "delta", root / "sid_delta"
    S.write_table(_items([(107, 12, 15.0, T("2024-01-03 08:00"))]), S.ITEMS, delta)
    S.write_table(_users([("u4", "m", "45-54", "mid", T("2024-01-03 07:00"))]), S.USERS, delta)
    S.write_table(
        _requests(
            [(6, T("2024-01-03 09:00"), "u3", [107, 101], [107]), (7, T("2024-01-03 10:00"), "u1", [103], [103])]
        ),
        S.REQUESTS,
        delta,
    )
    S.write_table(_sids([107], {107: SID[102]}), S.SID_ASSIGNMENTS, sid_dir)  # joins 102's cluster
    before = FeatureClient(root / "repo", root / "feast")
    assert not before.item_features([107]).found[0]

    result = update_features(CFG, delta, sid_dir, root / "repo", root / "feast")
    assert result.item_rows == 3  # only the changed items: 107 (new), 101 and 103 (new exposures)

    client = FeatureClient(root / "repo", root / "feast")
    f = client.item_features([107, 101])
    assert f.found.all() and f.sid[0] == SID[102] and f.category_path[0] == "Home > Mugs"
    assert f.extra["exposures"].tolist() == [1, 4]
    assert client.user_context("u3").recent_sids == (SID[102],)
    u1 = client.user_context("u1")
    assert u1.recent_sids == (SID[103], SID[102], SID[104]) and u1.n_clicks == 4  # recent_n=3 keeps 3
    assert client.user_context("u4").known

    # Point-in-time joins still hold across the appended parts.
    entity = pd.DataFrame(
        {
            "request_id": [2, 7],
            "user_id": ["u1", "u1"],
            "event_timestamp": [T("2024-01-02 11:00"), T("2024-01-03 10:00")],
        }
    )
    df = training_frame(root / "repo", entity, data_dir=root / "feast").set_index("request_id")
    assert df.loc[2, "recent_sids"] == [SID[101]]
    assert df.loc[7, "recent_sids"] == [SID[102], SID[104], SID[101]]  # not its own click on 103


def test_config_defaults_and_validation() -> None:
    cfg = from_dict(FeaturesConfig, {"recent_n": 5, "price_edges": [1, 2]})
    assert cfg.recent_n == 5 and cfg.price_edges == (1, 2)
    with pytest.raises(ValueError):
        FeaturesConfig(click_offset_ms=0)  # a click stamped at its request's time would leak into it
    with pytest.raises(ValueError):
        from_dict(FeaturesConfig, {"recent_m": 5})


def test_scale_out_configs_are_kept(tmp_path: Path, repo_root: Path) -> None:
    # A Redis online store and a SQL registry (docs/FEAST.md) are not redirected into the data dir.
    from genrecall.features.store import repo_config

    repo = tmp_path / "repo"
    shutil.copytree(repo_root / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    text = (repo / "feature_store.yaml").read_text()
    text = text.replace(
        "  registry_type: file\n  path: data/registry.db",
        "  registry_type: sql\n  path: postgresql+psycopg://feast@db:5432/feast",
    )
    text = text.replace(
        "  type: sqlite\n  path: data/online_store.db", '  type: redis\n  connection_string: "redis:6379,db=0"'
    )
    (repo / "feature_store.yaml").write_text(text)
    config = repo_config(repo, tmp_path / "feast")
    assert config.online_store.type == "redis" and config.online_store.connection_string == "redis:6379,db=0"
    assert config.registry.path == "postgresql+psycopg://feast@db:5432/feast"
    default = repo_config(repo_root / "feature_repo", tmp_path / "feast")
    assert default.online_store.path.endswith("feast/online_store.db") and default.registry.path.endswith(
        "feast/registry.db"
    )


def test_file_and_duckdb_offline_stores_agree_and_a_stale_registry_is_refreshed(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default DuckDB offline store gives the Dask file store's point-in-time rows; a registry applied
    under the other store type is re-applied by ``training_frame`` instead of failing."""
    from genrecall.features.store import apply

    repo, feast_dir = tmp_path / "repo", tmp_path / "feast"
    shutil.copytree(built["repo"], repo)
    shutil.copytree(built["feast"], feast_dir)
    yaml_path = repo / "feature_store.yaml"
    duckdb_yaml = yaml_path.read_text()
    assert "type: duckdb" in duckdb_yaml
    entity = pd.DataFrame(
        {
            "request_id": [5, 1, 2, 3, 4],
            "user_id": ["u1", "u1", "u1", "u2", None],
            "event_timestamp": [
                T("2024-01-02 14:00"),
                T("2024-01-02 10:00"),
                T("2024-01-02 11:00"),
                T("2024-01-02 12:00"),
                T("2024-01-02 13:00"),
            ],
        }
    )
    yaml_path.write_text(duckdb_yaml.replace("type: duckdb", "type: file"))
    monkeypatch.setenv("GENRECALL_FEAST_SOURCE", "file")
    apply(repo, feast_dir)
    by_file = training_frame(repo, entity, data_dir=feast_dir)
    yaml_path.write_text(duckdb_yaml)
    monkeypatch.delenv("GENRECALL_FEAST_SOURCE")
    stale = {v.name: v.batch_source.path for v in open_store(repo, feast_dir).list_feature_views()}
    by_duckdb = training_frame(repo, entity, data_dir=feast_dir)
    fresh = {v.name: v.batch_source.path for v in open_store(repo, feast_dir).list_feature_views()}
    assert all(p.endswith("*.parquet") for p in fresh.values()) and stale != fresh
    pd.testing.assert_frame_equal(by_file, by_duckdb)
    assert by_duckdb.set_index("request_id").loc[5, "recent_sids"] == [SID[102], SID[104], SID[101]]


def test_spark_sources_over_the_same_layout() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fr", Path(__file__).parents[1] / "feature_repo" / "features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    views = {o.name: o for o in module.build("s3a://bucket/feast/sources", kind="spark") if hasattr(o, "batch_source")}
    source = views["user_recent"].batch_source
    assert type(source).__name__ == "SparkSource" and source.path == "s3a://bucket/feast/sources/user_recent"
    with pytest.raises(ValueError):
        module.build("data/sources", kind="bigquery")


def test_marketplace_build_and_daily_update(tmp_path: Path, repo_root: Path) -> None:
    market = mp.generate_marketplace(mp.MarketplaceConfig(preset="tiny", seed=3))
    data, repo, feast_dir = tmp_path / "validated", repo_root / "feature_repo", tmp_path / "feast"
    for name, df in market.tables().items():
        S.write_table(_plain(df), S.ALL_TABLES[name], data)
    S.write_table(_stand_in_sids(market.items), S.SID_ASSIGNMENTS, tmp_path / "sid")
    built = features(FeaturesConfig(), data, tmp_path / "sid", repo, feast_dir)
    assert built.item_rows == len(market.items) and built.recent_rows > 0

    # No leak, on the real log: a request sees exactly the clicks of its user's strictly earlier requests
    # (exact where the previous request is over a minute earlier, so no click stamp can reach it).
    reqs = _plain(market.requests)
    reqs = reqs[reqs["user_id"].notna()].sort_values("ts").reset_index(drop=True)
    reqs["n_before"] = reqs.groupby("user_id")["clicked"].transform(lambda c: c.map(len).cumsum().shift(fill_value=0))
    reqs["gap"] = reqs.groupby("user_id")["ts"].diff().dt.total_seconds().fillna(np.inf)
    sample = reqs.sample(300, random_state=0)
    entity = sample.rename(columns={"ts": "event_timestamp"})[["request_id", "user_id", "event_timestamp"]]
    frame = training_frame(repo, entity, data_dir=feast_dir)
    n, before = frame["n_clicks"].to_numpy(), sample["n_before"].to_numpy()
    assert (n <= before).all()
    exact = sample["gap"].to_numpy() > 60
    assert exact.sum() > 100 and (n[exact] == before[exact]).all()

    # Next day: new items are served with their SIDs, the day's clicks show in the users' context.
    delta = mp.next_day(market)
    after = market.apply(delta)
    day_start = delta.requests["ts"].min().floor("D")
    items = _plain(after.items)
    changed = items[(items["updated_at"] >= day_start) | (items["listed_at"] >= day_start)]
    dd = tmp_path / "delta"
    S.write_table(changed, S.ITEMS, dd)
    S.write_table(_plain(delta.requests), S.REQUESTS, dd)
    S.write_table(_plain(delta.new_users), S.USERS, dd)
    new_sids = _stand_in_sids(delta.new_items)
    S.write_table(new_sids, S.SID_ASSIGNMENTS, tmp_path / "sid_delta")
    update_features(FeaturesConfig(), dd, tmp_path / "sid_delta", repo, feast_dir)

    client = FeatureClient(repo, feast_dir)
    got = client.item_features(new_sids["item_id"].to_numpy())
    assert got.found.all() and got.sid.tolist() == new_sids["sid"].tolist()
    clicks = _plain(after.requests)
    clicks = clicks[clicks["user_id"].notna()].groupby("user_id")["clicked"].agg(lambda c: sum(map(len, c)))
    active = sorted(set(delta.requests["user_id"].dropna()))[:20]
    assert [client.user_context(u).n_clicks for u in active] == [int(clicks[u]) for u in active]


def test_log_exposure_stats_counts_like_exposure_stats(tmp_path: Path) -> None:
    """The Arrow count over the log file equals the pandas one (whole log, and before a cutoff)."""
    from genrecall.features.sources import exposure_stats, log_exposure_stats

    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    rng = np.random.default_rng(1)
    exposed = [list(rng.choice(50, size=int(rng.integers(0, 8)), replace=False)) for _ in range(200)]
    req = pd.DataFrame(
        {
            "request_id": range(200),
            "ts": [t0 + pd.Timedelta(hours=h) for h in range(200)],
            "user_id": None,
            "query": "q",
            "query_kind": "noun",
            "exposed": exposed,
            "clicked": [e[:1] for e in exposed],
            "purchased": [[] for _ in exposed],
        }
    )
    S.write_table(req, S.REQUESTS, tmp_path)
    for before in (None, t0 + pd.Timedelta(hours=120)):
        part = req if before is None else req[req["ts"] < before]
        want = exposure_stats(part).sort_values("item_id").reset_index(drop=True)
        got = log_exposure_stats(tmp_path, before=before)
        pd.testing.assert_frame_equal(got, want)
        assert got["exposures"].sum() == sum(len(e) for e in part["exposed"])
