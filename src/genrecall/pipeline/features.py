"""The features stage: validated tables + SID assignments -> Feast sources, registry, online store.

``features`` is the full build (dvc stage ``features``): it rewrites every source, applies the repo and
materializes everything. ``update_features`` is the daily rebuild's step: it appends one part per
view holding only the day's changes (new/changed items with their SIDs, the day's click events, new
users) and brings the online store up to date with them, so it serves the new items' SIDs and the
day's behaviour right after. Both reach the online store as ``cfg.online_write`` says: ``push``
(default) writes the latest new row per entity straight to it, ``materialize`` runs Feast's
materialize over the rows' time window.

All generated state lives in ``feast_data_dir``: ``sources/``, ``state/`` (what the next update
continues from), ``registry.db`` and ``online_store.db``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from genrecall.data import schema as S
from genrecall.features import sources as src
from genrecall.features.sources import FeaturesConfig, SourceState
from genrecall.features.store import apply, materialize, write_online


@dataclass(frozen=True)
class FeaturesResult:
    """What a features run wrote."""

    feast_data_dir: Path
    as_of: pd.Timestamp  # snapshot time of the item rows
    start: pd.Timestamp  # materialized window
    end: pd.Timestamp
    item_rows: int  # rows written to each source by this run
    profile_rows: int
    recent_rows: int
    prior_ctr: float


def _read(spec: S.TableSpec, directory: str | Path, *, required: bool = True) -> pd.DataFrame:
    path = Path(directory) / spec.filename()
    if not required and not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in spec.columns})
    return S.read_table(spec, directory)


def _latest(*stamps: pd.Series | pd.Timestamp | None) -> pd.Timestamp | None:
    values = [pd.Timestamp(s.max()) if isinstance(s, pd.Series) else s for s in stamps if s is not None]
    values = [v for v in values if v is not None and not pd.isna(v)]
    return max(values) if values else None


def _write_and_materialize(
    repo_path: str | Path,
    feast_data_dir: Path,
    state: SourceState,
    *,
    items: pd.DataFrame,
    profiles: pd.DataFrame,
    recent: pd.DataFrame,
    start: pd.Timestamp | None,
    end: pd.Timestamp,
    push: bool = False,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Write one part per view, save the state, apply, then materialize ``[start, end]`` (or push the rows)."""
    with Progress(transient=True) as bar:
        task = bar.add_task("features: writing sources", total=3)
        sources, part = feast_data_dir / "sources", src.part_name(state.as_of)
        src.write_part(items, sources, src.ITEM_VIEW, part=part, created=state.as_of)
        src.write_part(profiles, sources, src.PROFILE_VIEW, part=part, created=state.as_of)
        src.write_part(recent, sources, src.RECENT_VIEW, part=part, created=state.as_of)
        state.save(feast_data_dir / "state")
        stamps = [state.as_of] if not items.empty else []
        stamps += [profiles[src.TIMESTAMP].min()] if not profiles.empty else []
        stamps += [recent[src.TIMESTAMP].min()] if not recent.empty else []
        start = start if start is not None else min(stamps, default=end)
        end = max(end, _latest(recent[src.TIMESTAMP] if not recent.empty else None) or end)
        bar.update(task, advance=1, description="features: feast apply")
        apply(repo_path, feast_data_dir)
        bar.update(task, advance=1, description=f"features: online store ({'push' if push else 'materialize'})")
        if push:
            created = {src.CREATED: state.as_of}
            items = items.assign(**{src.TIMESTAMP: state.as_of}, **created)
            rows = {
                src.ITEM_VIEW: items,
                src.PROFILE_VIEW: profiles.assign(**created),
                src.RECENT_VIEW: recent.assign(**created),
            }
            write_online(repo_path, feast_data_dir, rows)
        else:
            result = materialize(repo_path, feast_data_dir, start, end)
            start, end = result.start, result.end
        bar.update(task, advance=1)
    return start, end


def features(
    cfg: FeaturesConfig,
    data_dir: str | Path,
    sid_dir: str | Path,
    repo_path: str | Path,
    feast_data_dir: str | Path,
    *,
    end_ts: pd.Timestamp | None = None,
) -> FeaturesResult:
    """Full build from the validated tables in ``data_dir`` and ``sid_dir/sid_assignments.parquet``.

    ``end_ts`` is the snapshot time (default: the latest timestamp in the data); later requests and
    items are left out. Earlier sources and state in ``feast_data_dir`` are replaced.
    """
    out = Path(feast_data_dir)
    items, categories = S.read_table(S.ITEMS, data_dir), S.read_table(S.CATEGORIES, data_dir)
    users, requests = _read(S.USERS, data_dir, required=False), S.read_table(S.REQUESTS, data_dir)
    sids = S.read_table(S.SID_ASSIGNMENTS, sid_dir)
    as_of = (
        pd.Timestamp(end_ts)
        if end_ts is not None
        else _latest(
            requests["ts"], items["listed_at"], items["updated_at"], users["created_at"] if len(users) else None
        )
    )
    if as_of is None:
        raise ValueError(f"no timestamps in {data_dir}: pass end_ts")
    requests = requests[requests["ts"] <= as_of]
    users = users[users["created_at"].isna() | (users["created_at"] <= as_of)] if len(users) else users

    stats = src.exposure_stats(requests)
    prior = cfg.quality_prior_ctr if cfg.quality_prior_ctr is not None else src.log_ctr(stats)
    attrs = src.item_attributes(items, categories, as_of=as_of)
    item_rows = src.assemble_items(attrs, stats, sids, cfg=cfg, prior_ctr=prior)
    profiles = src.profile_rows(users) if len(users) else pd.DataFrame()
    events = src.click_events(requests, offset_ms=cfg.click_offset_ms)
    recent, recent_state = src.recent_rows(events, item_rows, cfg=cfg)

    shutil.rmtree(out / "sources", ignore_errors=True)  # a full build replaces history
    state = SourceState(item_rows, recent_state, categories, prior, as_of, {"recent_n": cfg.recent_n})
    start, end = _write_and_materialize(
        repo_path,
        out,
        state,
        items=item_rows,
        profiles=profiles,
        recent=recent,
        start=pd.Timestamp("1970-01-01", tz="UTC"),
        end=as_of,
        push=cfg.online_write == "push",
    )
    return FeaturesResult(out, as_of, start, end, len(item_rows), len(profiles), len(recent), prior)


def update_features(
    cfg: FeaturesConfig,
    delta_dir: str | Path,
    sid_dir: str | Path,
    repo_path: str | Path,
    feast_data_dir: str | Path,
    *,
    end_ts: pd.Timestamp | None = None,
) -> FeaturesResult:
    """Append one day's changes to the sources and bring the online store up to date with them.

    ``delta_dir`` holds the day's contract tables, each optional: ``requests`` (the day's log),
    ``items`` (new or changed items), ``users`` (new users), ``categories`` (when the tree changed).
    ``sid_dir/sid_assignments.parquet`` holds the new/changed assignments (a full table works too).
    Exposure counts accumulate; the CTR prior stays the one frozen by the full build.
    """
    out = Path(feast_data_dir)
    state = SourceState.load(out / "state")
    requests = _read(S.REQUESTS, delta_dir, required=False)
    items = _read(S.ITEMS, delta_dir, required=False)
    users = _read(S.USERS, delta_dir, required=False)
    categories = _read(S.CATEGORIES, delta_dir, required=False)
    categories = categories if len(categories) else state.categories
    sids = _read(S.SID_ASSIGNMENTS, sid_dir, required=False)
    stamps = (requests["ts"], items["listed_at"], items["updated_at"], users["created_at"])
    as_of = pd.Timestamp(end_ts) if end_ts is not None else _latest(*(s for s in stamps if len(s)))
    if as_of is None:
        raise ValueError(f"no timestamps in {delta_dir}: pass end_ts")

    old = state.items
    attrs_old = old[["item_id", "category_id", "category_path", "brand", "price", "listed"]]
    attrs_new = src.item_attributes(items, categories, as_of=as_of) if len(items) else attrs_old.iloc[:0]
    attrs = pd.concat([attrs_old, attrs_new]).drop_duplicates("item_id", keep="last")
    day = src.exposure_stats(requests)
    stats = pd.concat([old[["item_id", "exposures", "clicks"]], day]).groupby("item_id", as_index=False).sum()
    sid_all = pd.concat([old[["item_id", "sid"]], sids[["item_id", "sid"]]]).drop_duplicates("item_id", keep="last")
    new_items = src.assemble_items(attrs, stats, sid_all, cfg=cfg, prior_ctr=state.prior_ctr)
    changed = src.changed_items(new_items, old)

    profiles = src.profile_rows(users) if len(users) else pd.DataFrame()
    events = src.click_events(requests, offset_ms=cfg.click_offset_ms)
    recent, recent_state = src.recent_rows(events, new_items, cfg=cfg, state=state.recent)

    new_state = SourceState(new_items, recent_state, categories, state.prior_ctr, as_of, state.meta)
    start, end = _write_and_materialize(
        repo_path,
        out,
        new_state,
        items=changed,
        profiles=profiles,
        recent=recent,
        start=None,
        end=as_of,
        push=cfg.online_write == "push",
    )
    return FeaturesResult(out, as_of, start, end, len(changed), len(profiles), len(recent), state.prior_ctr)
