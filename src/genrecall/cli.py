"""The ``genrecall`` command line: one command per pipeline stage, plus tools around them.

Each command reads its settings from ``params.yaml`` (namespace = stage name), calls the stage
function in ``genrecall.pipeline`` and prints a short summary. DVC runs these commands
(``dvc.yaml``); Prefect flows call the same stage functions directly. Heavy libraries are imported
inside the commands so ``genrecall --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from genrecall.env import apply_defaults

apply_defaults()

app = typer.Typer(
    name="genrecall",
    help="Generative recall for e-commerce search (CQ-SID + trie-constrained generator).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

ParamsOpt = Annotated[Path | None, typer.Option("--params", help="params.yaml to read (default: ./params.yaml)")]


def _params(path: Path | None) -> dict:
    from genrecall.config import load_params

    return load_params(path)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


# path options shared by several stage commands (the option name comes from the parameter's)
DataDirOpt = Annotated[Path, typer.Option(help="validated tables")]
SidDirOpt = Annotated[Path, typer.Option(help="sid stage output")]
EmbDirOpt = Annotated[Path, typer.Option(help="embed stage output")]
FeastRepoOpt = Annotated[Path, typer.Option(help="Feast feature repo")]
FeastDataOpt = Annotated[Path, typer.Option(help="Feast data dir")]
NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        min=1,
        help="data-parallel training processes on this machine "
        "(torchrun; gloo on CPU, nccl on GPU). 1 = a plain process",
    ),
]


def _torchrun(nproc: int) -> bool:
    """``--nproc N`` > 1 outside torchrun: run this same command as N torchrun processes, then exit."""
    import os
    import subprocess
    import sys

    if nproc <= 1 or "LOCAL_RANK" in os.environ:
        return False
    args, skip = [], False
    for a in sys.argv[1:]:  # drop --nproc (torchrun's parser would take it for its own --nproc-per-node)
        if not skip and not a.startswith("--nproc"):
            args.append(a)
        skip = a == "--nproc"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "genrecall",
        *args,
    ]
    raise typer.Exit(subprocess.call(cmd))


@contextmanager
def _ranked(p: dict, *dirs: Path) -> Iterator[tuple[bool, list[Path]]]:
    """Join the torchrun job if there is one (``scale.dist``); rank 0 writes to ``dirs``, every other
    rank to a scratch copy that is deleted afterwards (the stage functions write unconditionally)."""
    import shutil
    import tempfile

    from genrecall import dist
    from genrecall.config import from_dict
    from genrecall.pipeline.shards import ScaleConfig

    ctx = dist.init(from_dict(dist.DistConfig, from_dict(ScaleConfig, p.get("scale")).dist))
    scratch = None if ctx.is_main else Path(tempfile.mkdtemp(prefix=f"genrecall-rank{ctx.rank}-"))
    try:
        yield ctx.is_main, list(dirs) if scratch is None else [scratch / f"out{i}" for i in range(len(dirs))]
    finally:
        dist.teardown()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@app.command()
def export(
    files: Annotated[str, typer.Option(help="landing directory (any fsspec URL): date=YYYY-MM-DD/<table>.<fmt>")],
    sql: Annotated[str | None, typer.Option(help="SQLAlchemy URL: the catalog goes there, the log to --files")] = None,
    days: Annotated[int | None, typer.Option(help="simulated days to export (default: the preset's)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
    ground_truth: Annotated[bool, typer.Option(help="also export GROUND_TRUTH (a real shop has none)")] = True,
    preset: Annotated[str | None, typer.Option(help="override generate.preset")] = None,
    seed: Annotated[int | None, typer.Option(help="override generate.seed")] = None,
    params: ParamsOpt = None,
) -> None:
    """Write the simulator's days as a shop would deliver them (params ``generate``): daily partitions,
    and with --sql the catalog in a database. Existing partitions are kept: rerun with more --days to
    deliver the next days."""
    import dataclasses

    from genrecall.config import from_dict
    from genrecall.data.marketplace import MarketplaceConfig
    from genrecall.data.sources.export import export as run

    cfg = from_dict(MarketplaceConfig, _params(params).get("generate"))
    overrides: dict[str, Any] = {k: v for k, v in {"preset": preset, "seed": seed}.items() if v is not None}
    res = run(dataclasses.replace(cfg, **overrides), files, days=days, fmt=fmt, sql_url=sql, ground_truth=ground_truth)
    console.print(
        f"exported {res.days} days of preset [bold]{cfg.preset}[/] to {files}: "
        f"{len(res.written)} partitions written, {len(res.kept)} kept"
        + (f"; catalog to the database ({', '.join(f'{k}={v:,}' for k, v in res.sql_rows.items())})" if sql else "")
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="directory for the raw tables")] = Path("data/raw"),
    preset: Annotated[str | None, typer.Option(help="override generate.preset")] = None,
    seed: Annotated[int | None, typer.Option(help="override generate.seed")] = None,
    params: ParamsOpt = None,
) -> None:
    """The first stage: the configured source's tables (params ``source``; default the synthetic marketplace)."""
    import dataclasses

    from genrecall.config import from_dict
    from genrecall.data.marketplace import MarketplaceConfig
    from genrecall.data.sources import BoundaryError, SourceConfig, bootstrap
    from genrecall.pipeline.generate import generate as run

    p = _params(params)
    source = from_dict(SourceConfig, p.get("source"))
    if source.kind != "marketplace":  # a shop's exports (files) or catalog database + log files (sql)
        try:
            boot = bootstrap(source, out)
        except BoundaryError as e:
            _fail(str(e))
        console.print(
            f"read {source.kind} source: days {boot.first_date}..{boot.last_date} ({boot.days}): "
            + ", ".join(f"{k}={v:,}" for k, v in boot.rows.items())
            + (f"; held back for the quarantine: {boot.held}" if boot.held else "")
        )
        return
    cfg = from_dict(MarketplaceConfig, p.get("generate"))
    overrides: dict[str, Any] = {k: v for k, v in {"preset": preset, "seed": seed}.items() if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    result = run(cfg, out)
    console.print(
        f"generated preset [bold]{cfg.preset}[/] (seed {cfg.seed}) in {result.seconds:.1f}s: "
        + ", ".join(f"{k}={v:,}" for k, v in result.rows.items())
    )


@app.command()
def validate(
    in_dir: Annotated[Path, typer.Option(help="raw tables to validate")] = Path("data/raw"),
    out_dir: Annotated[Path, typer.Option(help="where good rows go")] = Path("data/validated"),
    quarantine_dir: Annotated[Path, typer.Option(help="where bad rows go, with reasons")] = Path("data/quarantine"),
    report: Annotated[Path, typer.Option(help="validation report (JSON; a .md beside it)")] = Path(
        "reports/validation.json"
    ),
    reference_dir: Annotated[Path | None, typer.Option(help="already-validated tables for cross-table checks")] = None,
    params: ParamsOpt = None,
) -> None:
    """Validate every incoming table with Great Expectations; quarantine bad rows with reasons."""
    from genrecall.config import from_dict
    from genrecall.data.validate import ValidateConfig, ValidationError
    from genrecall.pipeline.validate import validate as run

    cfg = from_dict(ValidateConfig, _params(params).get("validate"))
    try:
        rep = run(cfg, in_dir, out_dir, quarantine_dir, report, reference_dir=reference_dir)
    except ValidationError as exc:
        _fail(str(exc))
        return
    for name, t in rep.tables.items():
        console.print(f"{name:>14}: {t.rows_in:>9,} in  {t.good:>9,} good  {t.quarantined:>7,} quarantined")


@app.command()
def embed(
    data_dir: DataDirOpt = Path("data/validated"),
    cache_dir: Annotated[Path, typer.Option(help="embedding cache (keyed by text hash)")] = Path(".state/embed-cache"),
    out: Annotated[Path, typer.Option(help="where the embeddings go")] = Path("data/embeddings"),
    params: ParamsOpt = None,
) -> None:
    """Embed item texts and queries (MiniLM by default); only new or changed texts are encoded."""
    from genrecall.config import from_dict
    from genrecall.pipeline.embed import EmbedConfig
    from genrecall.pipeline.embed import embed as run

    res = run(from_dict(EmbedConfig, _params(params).get("embed")), data_dir, cache_dir, out)
    console.print(
        f"{res.encoder} ({res.dim}-d): {res.items:,} items ({res.item_encoded:,} encoded, "
        f"{res.item_cache_hits:,} cached), {res.queries:,} queries ({res.query_encoded:,} encoded)"
    )


@app.command()
def sid(
    data_dir: DataDirOpt = Path("data/validated"),
    emb_dir: EmbDirOpt = Path("data/embeddings"),
    model_dir: Annotated[Path, typer.Option(help="where the frozen SID tokenizers go")] = Path("models/sid"),
    out: Annotated[Path, typer.Option(help="SID assignments + index per method")] = Path("data/sid"),
    reports_dir: Annotated[Path, typer.Option(help="sid_health.json and plots")] = Path("reports"),
    nproc: NprocOpt = 1,
    params: ParamsOpt = None,
) -> None:
    """Fit CQ-SID and the RQ-VAE baseline; write SIDs, the SID index/trie and the health report."""
    from genrecall.config import from_dict
    from genrecall.pipeline.sid import SidConfig
    from genrecall.pipeline.sid import sid as run

    if _torchrun(nproc):
        return
    p = _params(params)
    with _ranked(p, model_dir, out, reports_dir) as (main, (model_dir, out, reports_dir)):
        res = run(from_dict(SidConfig, p.get("sid")), data_dir, emb_dir, model_dir, out, reports_dir)
    if not main:
        return
    for method, m in res.methods.items():
        console.print(
            f"{method:>7}: {m.items:,} items -> {m.sids:,} SIDs, codebooks {m.codebook_sizes}, "
            f"{m.items_with_queries:,} items with queries, fit {m.fit_seconds:.0f}s"
        )


@app.command()
def features(
    data_dir: DataDirOpt = Path("data/validated"),
    sid_dir: Annotated[Path, typer.Option(help="SID assignments of the production method")] = Path("data/sid/cq_sid"),
    repo: FeastRepoOpt = Path("feature_repo"),
    out: Annotated[Path, typer.Option(help="Feast data: sources, registry, online store")] = Path("data/feast"),
    params: ParamsOpt = None,
) -> None:
    """Write Feast sources, apply the feature repo and fill the online store."""
    from genrecall.config import from_dict
    from genrecall.features.sources import FeaturesConfig
    from genrecall.pipeline.features import features as run

    res = run(from_dict(FeaturesConfig, _params(params).get("features")), data_dir, sid_dir, repo, out)
    console.print(
        f"feast: {res.item_rows:,} item rows, {res.profile_rows:,} profiles, "
        f"{res.recent_rows:,} recent-behaviour rows; online as of {res.end}"
    )


@app.command("train-sft")
def train_sft(
    data_dir: DataDirOpt = Path("data/validated"),
    sid_dir: SidDirOpt = Path("data/sid"),
    out: Annotated[Path, typer.Option(help="generator checkpoints per method and stage")] = Path("models/generator"),
    reports_dir: Annotated[Path, typer.Option(help="train.json")] = Path("reports"),
    feast_repo: FeastRepoOpt = Path("feature_repo"),
    feast_data: FeastDataOpt = Path("data/feast"),
    cache_dir: Annotated[Path, typer.Option(help="embedding cache, for a semantic prompt")] = Path(
        ".state/embed-cache"
    ),
    nproc: NprocOpt = 1,
    params: ParamsOpt = None,
) -> None:
    """Progressive SFT (I2SID -> Q2SID -> UQ2SID) of the generator for each SID method."""
    from genrecall.pipeline.train import train as run
    from genrecall.pipeline.train import train_config

    if _torchrun(nproc):
        return
    p = _params(params)
    with _ranked(p, out, reports_dir) as (main, (out, reports_dir)):
        res = run(
            train_config({"train": p.get("train"), "embed": p.get("embed")}),
            data_dir,
            sid_dir,
            out,
            reports_dir,
            cache_dir=cache_dir,
            feast_repo=feast_repo,
            feast_data_dir=feast_data,
        )
    if not main:
        return
    for method, stages in res.stages.items():
        for stage, s in stages.items():
            console.print(
                f"{method:>7} {stage:>6}: {s['examples']:,} examples, {s['steps']:,} steps, "
                f"loss {s['final_loss']:.3f}, {s['examples_per_s']:.0f} ex/s"
            )


@app.command("train-rl")
def train_rl(
    data_dir: DataDirOpt = Path("data/validated"),
    sid_dir: SidDirOpt = Path("data/sid"),
    gen_dir: Annotated[Path, typer.Option(help="train_sft output (starting checkpoints)")] = Path("models/generator"),
    out: Annotated[Path, typer.Option(help="RL generators per method and variant")] = Path("models/rl"),
    reports_dir: Annotated[Path, typer.Option(help="train_rl.json and step logs")] = Path("reports"),
    feast_repo: FeastRepoOpt = Path("feature_repo"),
    feast_data: FeastDataOpt = Path("data/feast"),
    nproc: NprocOpt = 1,
    params: ParamsOpt = None,
) -> None:
    """EG-GRPO (and plain GRPO, K=0) from the final UQ2SID checkpoint, one model per variant."""
    from genrecall.config import from_dict
    from genrecall.pipeline.train import TrainConfig
    from genrecall.pipeline.train_rl import TrainRLConfig
    from genrecall.pipeline.train_rl import train_rl as run

    if _torchrun(nproc):
        return
    p = _params(params)
    with _ranked(p, out, reports_dir) as (main, (out, reports_dir)):
        res = run(
            from_dict(TrainRLConfig, p.get("train_rl")),
            data_dir,
            sid_dir,
            gen_dir,
            out,
            reports_dir,
            train_cfg=from_dict(TrainConfig, p.get("train")),
            feast_repo=feast_repo,
            feast_data_dir=feast_data,
        )
    if not main:
        return
    for name, v in res.variants.items():
        s = v["summary"]
        console.print(
            f"{name:>11}: {s['steps']} steps, reward {s['reward_mean']:.3f}, zero-variance groups "
            f"{s['zero_variance_share']:.1%}, {s['unique_sids']:.1f} unique SIDs/group, {s['seconds']:.0f} s"
        )


@app.command()
def evaluate(
    data_dir: DataDirOpt = Path("data/validated"),
    sid_dir: SidDirOpt = Path("data/sid"),
    emb_dir: EmbDirOpt = Path("data/embeddings"),
    gen_dir: Annotated[Path, typer.Option(help="train_sft output")] = Path("models/generator"),
    reports_dir: Annotated[Path, typer.Option(help="metrics.json, curves.csv, plots")] = Path("reports"),
    feast_repo: FeastRepoOpt = Path("feature_repo"),
    feast_data: FeastDataOpt = Path("data/feast"),
    rl_dir: Annotated[Path | None, typer.Option(help="train_rl output; its variants are evaluated if present")] = Path(
        "models/rl"
    ),
    sid_model_dir: Annotated[
        Path, typer.Option(help="sid stage tokenizers; with <dir>/cq_sid the training-free reference rows are scored")
    ] = Path("models/sid"),
    params: ParamsOpt = None,
) -> None:
    """Evaluate CQ-SID, the RQ-VAE baseline, BM25 and dense on held-out requests -> reports/metrics.json."""
    from genrecall.config import from_dict
    from genrecall.pipeline.evaluate import EvaluateConfig
    from genrecall.pipeline.evaluate import evaluate as run

    p = _params(params)
    res = run(
        from_dict(EvaluateConfig, p.get("evaluate")),
        data_dir,
        sid_dir,
        emb_dir,
        gen_dir,
        reports_dir,
        feast_repo=feast_repo,
        feast_data_dir=feast_data,
        preset=(p.get("generate") or {}).get("preset"),
        source=(p.get("source") or {}).get("kind") or "marketplace",
        rl_dir=rl_dir,
        sid_model_dir=sid_model_dir if (sid_model_dir / "cq_sid").is_dir() else None,
    )
    if not (sid_model_dir / "cq_sid").is_dir():
        console.print(f"[yellow]no {sid_model_dir / 'cq_sid'}: the training-free references not scored[/]")
    console.print(f"wrote {res.metrics_path} ({res.test_pairs})")


@app.command()
def summary(
    metrics: Annotated[Path, typer.Option(help="metrics.json to print")] = Path("reports/metrics.json"),
) -> None:
    """Print the results table of the last evaluation."""
    from genrecall.eval.report import print_summary, read_metrics

    if not metrics.exists():
        _fail(f"{metrics} does not exist yet: run `dvc repro` (or `make run`) first")
    print_summary(read_metrics(metrics), console)


@app.command()
def report(
    reports_dir: Annotated[Path, typer.Option(help="what the pipeline wrote: metrics.json, curves.csv, ...")] = Path(
        "reports"
    ),
    sid_dir: Annotated[Path, typer.Option(help="SID assignments per method (cluster sizes)")] = Path("data/sid"),
    daily_dir: Annotated[Path, typer.Option(help="the daily rebuild's per-day records")] = Path("daily"),
    out: Annotated[Path, typer.Option(help="the HTML file to write")] = Path("reports/report.html"),
    params: ParamsOpt = None,
) -> None:
    """Write one self-contained HTML report (charts inline, no network needed to open it)."""
    from genrecall.eval.report_html import write_report

    t_max = (_params(params).get("sid") or {}).get("t_max", 50)  # clusters above it were split (drawn as a line)
    res = write_report(reports_dir, out, sid_dir=sid_dir, daily_dir=daily_dir, t_max=t_max)
    console.print(f"report: {len(res.charts)} charts in {len(res.sections)} sections, {res.bytes / 1024:.0f} KB")
    print(res.path.resolve().as_uri())  # plain print: the path must not wrap; open it in a browser


@app.command("split-judged")
def split_judged(
    judgments: Annotated[Path, typer.Option(help="query,item_id,relevance CSV")],
    train_out: Annotated[Path, typer.Option(help="train half (CSV)")],
    test_out: Annotated[Path, typer.Option(help="test half (CSV)")],
    test_share: Annotated[float, typer.Option(help="share of queries held out")] = 0.5,
    seed: Annotated[int, typer.Option(help="split seed")] = 0,
) -> None:
    """Split judgments by query (no query in both halves) for `genrecall eval-real`.

    Every row of the input lands in one half as it was read, malformed ones included: their
    ``_parse_error`` column goes along, so `eval-real` quarantines them instead of seeing clean rows."""
    from genrecall.data.judged import read_judgments, split_judgments
    from genrecall.data.validate import PARSE_ERROR_COLUMN

    raw = read_judgments(judgments)
    split = split_judgments(raw, test_share=test_share, seed=seed)
    for frame, path in ((split.train, train_out), (split.test, test_out)):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame[["query", "item_id", "relevance", PARSE_ERROR_COLUMN]].to_csv(path, index=False)
    console.print(f"train: {len(split.train):,} judgments ({split.train['query'].nunique():,} queries) -> {train_out}")
    console.print(f"test:  {len(split.test):,} judgments ({split.test['query'].nunique():,} queries) -> {test_out}")
    broken = int(raw[PARSE_ERROR_COLUMN].notna().sum())
    if broken:
        console.print(
            f"[yellow]{broken:,} malformed line(s) kept with their {PARSE_ERROR_COLUMN} note "
            "(eval-real quarantines them)[/]"
        )


@app.command("eval-real")
def eval_real(
    products: Annotated[Path, typer.Option(help="item_id,title[,category] CSV")],
    train: Annotated[Path, typer.Option(help="training judgments: query,item_id,relevance")],
    test: Annotated[Path, typer.Option(help="test judgments (query-disjoint from --train)")],
    out: Annotated[Path, typer.Option(help="metrics JSON to write (a `judged` test set)")],
    work_dir: Annotated[Path | None, typer.Option(help="models and indexes (default: OUT without suffix)")] = None,
    params: ParamsOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="override eval_real params: KEY=VALUE (YAML), e.g. --set sid.target_items_per_sid=10; repeatable",
        ),
    ] = None,
) -> None:
    """Train CQ-SID, the RQ-VAE baseline and their generators on judged data; evaluate with BM25 and dense."""
    from genrecall.config import from_dict, merge_params
    from genrecall.pipeline.eval_real import EvalRealConfig
    from genrecall.pipeline.eval_real import eval_real as run

    block = _params(params).get("eval_real") or {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--set needs KEY=VALUE, got {item!r}")
        override: Any = yaml.safe_load(value) if value else None
        for part in reversed(key.split(".")):
            override = {part: override}
        block = merge_params(block, override)
    res = run(from_dict(EvalRealConfig, block), products, train, test, out, work_dir=work_dir)
    console.print(f"wrote {res.out}: {res.test_queries:,} test queries, {res.test_pairs:,} relevant pairs")


@app.command()
def package(
    generator_dir: Annotated[Path, typer.Option(help="generator to ship")] = Path(
        "models/generator/cq_sid/uq2sid/final"
    ),
    sid_model_dir: Annotated[Path, typer.Option(help="its SID tokenizer")] = Path("models/sid/cq_sid"),
    index_dir: Annotated[Path, typer.Option(help="its SID index")] = Path("data/sid/cq_sid"),
    data_dir: Annotated[Path, typer.Option(help="validated tables (titles, item quality)")] = Path("data/validated"),
    metrics: Annotated[Path, typer.Option(help="metrics the gate compares")] = Path("reports/metrics.json"),
    report: Annotated[Path, typer.Option(help="what happened (JSON)")] = Path("reports/package.json"),
    rl_dir: Annotated[
        Path | None, typer.Option(help="train_rl output: its variants may be served (package.select_*)")
    ] = Path("models/rl"),
    params: ParamsOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="promote even if the gate fails or production's metrics cannot be read (the decision says 'forced')",
        ),
    ] = False,
) -> None:
    """Save the bundle to the BentoML store and promote it if it passes the gate."""
    from genrecall.config import from_dict
    from genrecall.pipeline.package import PackageConfig
    from genrecall.pipeline.package import package as run
    from genrecall.serving.gate import GateConfig

    p = _params(params)
    cfg = from_dict(PackageConfig, p.get("package"))
    gate_cfg = from_dict(GateConfig, {"name": cfg.name, **(p.get("gate") or {})})
    res = run(
        cfg,
        gate_cfg,
        generator_dir=generator_dir,
        sid_model_dir=sid_model_dir,
        index_dir=index_dir,
        data_dir=data_dir,
        metrics_path=metrics,
        params=p,
        report=report,
        rl_dir=rl_dir,
        force=force,
    )
    console.print(f"serving the {res.served} generator (package.select_*)")
    verdict = "[green]promoted[/]" if res.promoted else "[yellow]kept the current production bundle[/]"
    console.print(f"bundle {res.tag}: {res.items:,} items, {res.sids:,} SIDs; {verdict} (production: {res.production})")
    for reason in res.reasons:
        console.print(f"  - {reason}")


@app.command()
def promote(tag: Annotated[str, typer.Argument(help="bundle tag in the BentoML store")]) -> None:
    """Make TAG the production bundle (atomic; a running server picks it up on restart)."""
    from genrecall.serving.gate import promote as run

    run(tag)
    console.print(f"production -> {tag}")


@app.command()
def rollback() -> None:
    """Point production back at the previous production bundle."""
    from genrecall.serving.gate import rollback as run

    console.print(f"production -> {run()}")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 3000,
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    bundle: Annotated[str | None, typer.Option(help="bundle tag or dir (default: production)")] = None,
) -> None:
    """Serve the production bundle over HTTP (BentoML): POST /search, GET /healthz."""
    import os
    import subprocess

    env = dict(os.environ)
    env.setdefault("GENRECALL_HOME", str(Path.cwd()))
    env.setdefault("GENRECALL_PARAMS", str(Path("params.yaml").resolve()))
    if bundle:
        env["GENRECALL_BUNDLE"] = bundle
    console.print(
        f"serving on http://{host}:{port}  (try: curl -s -X POST http://{host}:{port}/search "
        '-H \'content-type: application/json\' -d \'{"query": "red kettle", "k": 5}\')'
    )
    from genrecall.serving.launch import serve_command

    raise typer.Exit(subprocess.call(serve_command(port, host), env=env))


@app.command()
def bento(
    bundle: Annotated[str | None, typer.Option(help="bundle tag or dir to ship (default: production)")] = None,
    bentofile: Annotated[Path | None, typer.Option(help="bentofile (default: bento/bentofile.yaml)")] = None,
    params: ParamsOpt = None,
) -> None:
    """Build a deployable Bento: the service, this checkout's genrecall wheel and the bundle (a model)."""
    from genrecall.serving.bento_build import build_bento

    res = build_bento(bundle, repo_root=Path("."), bentofile=bentofile, params=_params(params) if params else None)
    console.print(f"built Bento {res.tag} carrying {res.bundle} (wheel {res.wheel})")
    console.print(f"  serve it:     bentoml serve {res.tag}")
    console.print(f"  an image:     bentoml containerize {res.tag}")
    print(f"__tag__:{res.tag}")  # one parseable line (scripts: `genrecall bento | sed -n 's/^__tag__://p'`)


@app.command()
def backfill(
    days: Annotated[int, typer.Option(help="simulated days to run the daily rebuild for")] = 1,
    workspace: Annotated[Path, typer.Option(help="the project workspace (after `dvc repro`)")] = Path("."),
    params: ParamsOpt = None,
) -> None:
    """Run the Prefect daily rebuild flow for the next N simulated days of the marketplace."""
    import sys

    sys.path.insert(0, str(workspace.resolve()))  # flows/ lives at the project root, beside src/
    from flows.daily_rebuild import backfill as run

    results = run(days, workspace=str(workspace), params_path=str(params or workspace / "params.yaml"))
    for r in results:
        console.print({k: r[k] for k in ("day", "mode", "promoted") if k in r} or r)
