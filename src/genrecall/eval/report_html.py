"""``genrecall report``: one self-contained HTML page of what the pipeline measured.

    result = write_report("reports", "reports/report.html", sid_dir="data/sid", daily_dir="daily")

Sections: hitrate against beams per method and test set; items@100/items@1000 of every method (BM25
and dense included) and the fusion block; SID health (cluster-size histogram, utilisation and entropy
per level); the EG-GRPO variants against SFT; validation and quarantine counts; the daily history
(one row per day: new and delisted items, incremental or full, the gate decision, the served metrics
over time) when days were run; the served bundle. Charts are inline SVG from matplotlib, styles are
inline: the file opens from disk with no network and can be mailed as it is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genrecall.eval import report_charts as charts
from genrecall.eval.report import SUMMARY_KEYS
from genrecall.eval.report_inputs import ReportInputs, collect

RL_KEYS = ("hitrate@1", "hitrate@10", "hitrate@100", "clk@1", "clk@10", "exp@1", "exp@10", "pvr@10")
DAILY_KEYS = ("semantic/cq_sid/hitrate@10", "personalized/served/hitrate@10", "personalized/served/items@1000")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;background:#f6f8fa}
header,main{max-width:1060px;margin:0 auto;padding:0 20px}header{padding-top:18px}h1{margin:0 0 4px;font-size:22px}
nav a{margin-right:12px;color:#2458c6}section{background:#fff;border:1px solid #dde3ea;border-radius:8px;
padding:6px 18px 14px;margin:16px 0}h2{font-size:17px}h3{font-size:14px;margin:14px 0 6px}.muted{color:#5f6b7a}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{padding:3px 8px;border-bottom:1px solid #eef1f4;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}figure{margin:8px 0}
figure svg{max-width:100%;height:auto}figcaption{font-size:12px;color:#5f6b7a}.pass{color:#1b7f3b}.fail{color:#b3261e}
.up{color:#1b7f3b}.down{color:#b3261e}code{font-size:12px}
"""


@dataclass
class ReportResult:
    path: Path
    bytes: int
    charts: list[str] = field(default_factory=list)  # data-chart names, in page order
    sections: list[str] = field(default_factory=list)  # section ids, in page order


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return _e(v)


def _table(header: list[str], rows: list[list[Any]], digits: int = 3) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _num(c, digits)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts: list[str] = []
        self.sections: list[tuple[str, str]] = []

    def section(self, sid: str, title: str, body: str) -> None:
        self.sections.append((sid, title))
        self.parts.append(f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>')

    def chart(self, name: str, svg: str, caption: str) -> str:
        self.charts.append(name)
        return f'<figure class="chart" data-chart="{_e(name)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _recall(page: _Page, inp: ReportInputs) -> None:
    body = []
    for test_set in inp.test_sets:
        methods = _methods(inp, test_set)
        body.append(f"<h3>{_e(test_set)} test set</h3>")
        curves = inp.curves[inp.curves["test_set"] == test_set] if inp.curves is not None else None
        if curves is not None and len(curves):
            rankers = {m: v["items@1000"] for m, v in methods.items() if "items@1000" in v and "hitrate@1" not in v}
            body.append(
                page.chart(
                    f"hitrate-{test_set}",
                    charts.hitrate_vs_beams(curves, rankers, title=f"{test_set} test set"),
                    "Hitrate against beams per generator; right: only the first 1000 items count "
                    "(large clusters pay for their size). BM25 and dense have no beams: lines at their items@1000.",
                )
            )
        keys = [k for k in SUMMARY_KEYS if any(k in v for v in methods.values())]
        body.append(_table(["method", *keys], [[m, *(methods[m].get(k) for k in keys)] for m in sorted(methods)]))
    page.section(
        "recall", "Recall against beams", "".join(body) or "<p class=muted>No test-set block in metrics.json.</p>"
    )


def _methods(inp: ReportInputs, test_set: str) -> dict[str, dict[str, Any]]:
    """A test set's method blocks (the ``fusion`` block is not a method)."""
    return {m: v for m, v in inp.metrics[test_set].items() if isinstance(v, dict) and m != "fusion"}


def _items(page: _Page, inp: ReportInputs) -> None:
    sets = [s for s in inp.test_sets if any("items@1000" in v for v in _methods(inp, s).values())]
    if not sets:
        page.section("items", "items@1000 for every method", "<p class=muted>No items@N in metrics.json.</p>")
        return
    methods = sorted({m for s in sets for m, v in _methods(inp, s).items() if "items@1000" in v})
    series = {s: [inp.metrics[s].get(m, {}).get("items@1000") for m in methods] for s in sets}
    body = [
        page.chart(
            "items-at-1000",
            charts.grouped_bars(methods, series, ylabel="items@1000", title="Hit within the first 1000 items"),
            "Share of test (request, clicked item) pairs found within a method's first 1000 items: "
            "the candidate budget a ranker receives, the same for generators, BM25 and dense.",
        )
    ]
    rows = [
        [m, *(inp.metrics[s].get(m, {}).get(k) for s in sets for k in ("items@100", "items@1000"))] for m in methods
    ]
    body.append(_table(["method", *(f"{s} {k}" for s in sets for k in ("items@100", "items@1000"))], rows))
    fusion = {s: inp.metrics[s]["fusion"] for s in sets if isinstance(inp.metrics[s].get("fusion"), dict)}
    if fusion:
        keys = sorted({k for f in fusion.values() for k in f})
        body.append(
            "<h3>Fusion with BM25 and dense</h3>"
            + _table(["test set", *keys], [[s, *(f.get(k) for k in keys)] for s, f in fusion.items()])
        )
    page.section("items", "items@1000 for every method", "".join(body))


def _health(page: _Page, inp: ReportInputs, t_max: int | None) -> None:
    body = []
    if inp.cluster_sizes:
        body.append(
            page.chart(
                "cluster-sizes",
                charts.cluster_sizes(inp.cluster_sizes, cap=t_max),
                "Items per SID (log-log). CQ-SID shares clusters on purpose; the baseline's IDs are unique.",
            )
        )
    health = {m: h for m, h in inp.sid_health.items() if isinstance(h, dict)}
    if health:
        body.append(
            page.chart(
                "sid-levels", charts.per_level(health), "Per codebook level: share of codes used, and how evenly."
            )
        )
        keys = [
            ("items", "items"),
            ("sids", "SIDs"),
            ("clusters", "clusters"),
            ("collision_rate", "collision rate"),
            ("category_match", "category match"),
        ]
        rows = [
            [
                m,
                *(h.get(k) for k, _ in keys),
                *((h.get("items_per_sid") or {}).get(s) for s in ("mean", "p99", "max")),
                " / ".join(str(d) for d in h.get("dead_codes") or []),
            ]
            for m, h in sorted(health.items())
        ]
        body.append(
            _table(["method", *(t for _, t in keys), "items/SID mean", "p99", "max", "dead codes per level"], rows, 2)
        )
    page.section(
        "sid-health", "SID health", "".join(body) or "<p class=muted>No sid_health.json and no SID assignments.</p>"
    )


def _rl(page: _Page, inp: ReportInputs) -> None:
    per = inp.metrics.get("personalized") or {}
    variants = inp.rl_variants()
    if "cq_sid" not in per or not variants:
        page.section(
            "rl",
            "EG-GRPO against SFT",
            "<p class=muted>No EG-GRPO variant in metrics.json "
            "(the train_rl stage writes them; evaluate reads models/rl).</p>",
        )
        return
    methods = ["cq_sid", *variants]
    keys = [k for k in RL_KEYS if k in per["cq_sid"]]
    series = {("SFT (cq_sid)" if m == "cq_sid" else m): [per[m].get(k) for k in keys] for m in methods}
    body = [
        page.chart(
            "rl-variants",
            charts.grouped_bars(keys, series, ylabel="personalized test set", title="EG-GRPO variants against SFT"),
            "K = expert SIDs injected per group; K=0 is plain GRPO. "
            "The paper: EG-GRPO K=2 >= SFT everywhere, GRPO loses clk@10 and pvr@10.",
        )
    ]

    def cell(m: str, k: str) -> Any:
        v, base = per[m].get(k), per["cq_sid"].get(k)
        if m == "cq_sid" or v is None or base is None:
            return v
        cls = "up" if v > base else "down" if v < base else ""
        return _Raw(f'{v:.3f} <span class="{cls}">({v - base:+.3f})</span>')

    body.append(_table(["method", *keys], [[m, *(cell(m, k) for k in keys)] for m in methods]))
    trained = inp.train_rl.get("variants") or {}
    if trained:
        skeys = ("steps", "reward_mean", "zero_variance_share", "unique_sids", "seconds")
        body.append(
            "<h3>Training (train_rl.json)</h3>"
            + _table(
                ["variant", *skeys],
                [[v, *((t.get("summary") or {}).get(k) for k in skeys)] for v, t in trained.items()],
            )
        )
    page.section("rl", "EG-GRPO against SFT", "".join(body))


def _validation(page: _Page, inp: ReportInputs) -> None:
    tables = inp.validation.get("tables") or {}
    if not tables:
        page.section("validation", "Validation and quarantine", "<p class=muted>No validation.json.</p>")
        return
    names = list(tables)
    series = {"quarantined share": [t.get("bad_share") for t in tables.values()]}
    allowed = {t.get("max_bad_share") for t in tables.values()}
    if len(allowed) > 1:  # per-table thresholds: a bar each; one shared threshold: a red line
        series["allowed"] = [t.get("max_bad_share") for t in tables.values()]
    line = next(iter(allowed)) if len(allowed) == 1 else None
    body = [
        page.chart(
            "validation",
            charts.grouped_bars(
                names,
                series,
                ylabel="share of rows",
                title="Quarantined rows per table (red: allowed)",
                horizontal_line=line,
                height=2.8,
            ),
            "Rows that broke an expectation go to data/quarantine/ with their reasons; "
            "a table fails above its allowed share.",
        )
    ]
    rows = [
        [
            n,
            t.get("rows_in"),
            t.get("good"),
            t.get("quarantined"),
            t.get("bad_share"),
            _Raw('<span class="pass">pass</span>' if t.get("passed") else '<span class="fail">FAIL</span>'),
            ", ".join(f"{r}: {c}" for r, c in sorted((t.get("reasons") or {}).items(), key=lambda x: -x[1])[:4]) or "-",
        ]
        for n, t in tables.items()
    ]
    body.append(_table(["table", "rows in", "good", "quarantined", "bad share", "result", "top reasons"], rows, 4))
    page.section("validation", "Validation and quarantine", "".join(body))


def _daily(page: _Page, inp: ReportInputs) -> None:
    days = inp.days
    keys = [k for k in DAILY_KEYS if any(k in d.served for d in days)]
    body = []
    if keys:
        body.append(
            page.chart(
                "daily",
                charts.over_days(
                    [d.day for d in days],
                    {k: [d.served.get(k) for d in days] for k in keys},
                    {k: [d.production.get(k) for d in days] for k in keys},
                    [d.promoted for d in days],
                ),
                "Each day's candidate (solid) and the production bundle it had to beat, "
                "both on that day's gate sample (dashed).",
            )
        )

    def decision(d: Any) -> _Raw:
        if d.promoted is None:
            return _Raw('<span class="muted">not published</span>')
        return _Raw(
            '<span class="pass">promoted</span>'
            if d.promoted
            else f'<span class="fail" title="{_e("; ".join(d.reasons))}">rejected</span>'
        )

    rows = [[d.day, d.new_items, d.delisted, d.mode, decision(d), *(d.served.get(k) for k in keys)] for d in days]
    body.append(_table(["day", "new items", "delisted", "rebuild", "gate", *keys], rows))
    page.section("daily", "Daily history", "".join(body))


def _bundle(page: _Page, inp: ReportInputs) -> None:
    p = inp.package
    if not p:
        return
    rows = [
        ["bundle", p.get("tag")],
        ["serves generator", p.get("served") or "cq_sid"],
        ["promoted", p.get("promoted")],
        ["production after the gate", p.get("production")],
        ["items", p.get("items")],
        ["SIDs", p.get("sids")],
    ]
    reasons = "".join(f"<li>{_e(r)}</li>" for r in p.get("reasons") or [])
    page.section("bundle", "The packaged bundle", _table(["", ""], rows) + (f"<ul>{reasons}</ul>" if reasons else ""))


def render(inp: ReportInputs, *, title: str = "genrecall report", t_max: int | None = 50) -> tuple[str, _Page]:
    """The page's HTML and what it holds."""
    page = _Page()
    _recall(page, inp)
    _items(page, inp)
    _health(page, inp, t_max)
    _rl(page, inp)
    _validation(page, inp)
    if inp.days:
        _daily(page, inp)
    _bundle(page, inp)
    data = inp.metrics.get("data") or {}
    facts = ", ".join(
        f"{k} {_num(data[k])}" for k in ("source", "preset", "items", "requests", "test_pairs") if k in data
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in page.sections)
    sources = "".join(f"<li><code>{_e(p)}</code></li>" for p in inp.read)
    missing = "".join(f"<li><code>{_e(p)}</code></li>" for p in inp.missing)
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, '
        f'initial-scale=1"><title>{_e(title)}</title><link rel="icon" href="data:,"><style>{CSS}</style></head><body>'
        f'<header><h1>{_e(title)}</h1><p class="muted">{facts or "no data block"} · written {now}</p>'
        f"<nav>{nav}</nav></header>"
        f'<main>{"".join(page.parts)}<section id="sources"><h2>Sources</h2><ul>{sources}</ul>'
        + (f"<p class=muted>Not found:</p><ul>{missing}</ul>" if missing else "")
        + "</section></main></body></html>"
    )
    return doc, page


def write_report(
    reports_dir: str | Path = "reports",
    out: str | Path = "reports/report.html",
    *,
    sid_dir: str | Path | None = "data/sid",
    daily_dir: str | Path | None = "daily",
    t_max: int | None = 50,
) -> ReportResult:
    """Collect the pipeline's outputs and write the report (atomically: a reader never sees half a file)."""
    doc, page = render(collect(reports_dir, sid_dir=sid_dir, daily_dir=daily_dir), t_max=t_max)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return ReportResult(out, out.stat().st_size, page.charts, [sid for sid, _ in page.sections])
