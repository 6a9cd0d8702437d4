"""The generate stage: a synthetic marketplace -> the six contract tables in ``out_dir``.

Writes CATEGORIES, ITEMS, PRICE_EVENTS, USERS, REQUESTS and GROUND_TRUTH as Parquet (schema.py), the
simulator's hidden state under ``out_dir/sim/`` (what ``extend`` needs to simulate the next days),
and ``generate.json`` (config + row counts). ``extend`` appends simulated days to an existing output
for the daily rebuild; the result is byte-identical to generating the longer horizon in one go.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from genrecall.data.marketplace import Marketplace, MarketplaceConfig, generate_marketplace, next_day

GenerateConfig = MarketplaceConfig  # params.yaml namespace ``generate`` maps onto the simulator config


@dataclass
class GenerateResult:
    """What the stage wrote: table paths, row counts, simulated days and wall time."""

    out_dir: str
    paths: dict[str, str]
    rows: dict[str, int]
    days: int
    seconds: float


def generate(cfg: MarketplaceConfig, out_dir: str | Path, *, show_progress: bool = True) -> GenerateResult:
    """Generate the marketplace for ``cfg`` and write it to ``out_dir``."""
    start = time.perf_counter()
    market = generate_marketplace(cfg, progress=show_progress)
    return _write(market, Path(out_dir), start)


def extend(out_dir: str | Path, days: int = 1, *, show_progress: bool = True) -> GenerateResult:
    """Simulate ``days`` more days on the marketplace saved in ``out_dir`` and save it back."""
    start = time.perf_counter()
    market = Marketplace.load(out_dir)
    if show_progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"simulating days {market.days}..{market.days + days - 1}", total=days)
            for _ in range(days):
                market = market.apply(next_day(market))
                bar.advance(task)
    else:
        for _ in range(days):
            market = market.apply(next_day(market))
    return _write(market, Path(out_dir), start)


def _write(market: Marketplace, out_dir: Path, start: float) -> GenerateResult:
    paths = market.save(out_dir)
    rows = {name: len(df) for name, df in market.tables().items()}
    result = GenerateResult(
        str(out_dir), {k: str(v) for k, v in paths.items()}, rows, market.days, round(time.perf_counter() - start, 3)
    )
    meta = {"config": dataclasses.asdict(market.cfg), **dataclasses.asdict(result)}
    (out_dir / "generate.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return result
