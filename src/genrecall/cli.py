"""The ``genrecall`` command line: one command per pipeline stage, plus tools around them.

Each command reads its settings from ``params.yaml`` (namespace = stage name), calls the stage
function in ``genrecall.pipeline`` and prints a short summary. DVC runs these commands
(``dvc.yaml``); Prefect flows call the same stage functions directly. Heavy libraries are imported
inside the commands so ``genrecall --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
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

ParamsOpt = Annotated[Optional[Path], typer.Option("--params", help="params.yaml to read (default: ./params.yaml)")]


def _params(path: Path | None) -> dict:
    from genrecall.config import load_params

    return load_params(path)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="directory for the raw tables")] = Path("data/raw"),
    preset: Annotated[Optional[str], typer.Option(help="override generate.preset")] = None,
    seed: Annotated[Optional[int], typer.Option(help="override generate.seed")] = None,
    params: ParamsOpt = None,
) -> None:
    """Generate the synthetic marketplace (catalog, users, search log, ground truth)."""
    import dataclasses

    from genrecall.config import from_dict
    from genrecall.data.marketplace import MarketplaceConfig
    from genrecall.pipeline.generate import generate as run

    cfg = from_dict(MarketplaceConfig, _params(params).get("generate"))
    overrides = {k: v for k, v in {"preset": preset, "seed": seed}.items() if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    result = run(cfg, out)
    console.print(f"generated preset [bold]{cfg.preset}[/] (seed {cfg.seed}) in {result.seconds:.1f}s: "
                  + ", ".join(f"{k}={v:,}" for k, v in result.rows.items()))


@app.command()
def validate(
    in_dir: Annotated[Path, typer.Option(help="raw tables to validate")] = Path("data/raw"),
    out_dir: Annotated[Path, typer.Option(help="where good rows go")] = Path("data/validated"),
    quarantine_dir: Annotated[Path, typer.Option(help="where bad rows go, with reasons")] = Path("data/quarantine"),
    report: Annotated[Path, typer.Option(help="validation report (JSON; a .md beside it)")] = Path("reports/validation.json"),
    reference_dir: Annotated[Optional[Path], typer.Option(help="already-validated tables for cross-table checks")] = None,
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
