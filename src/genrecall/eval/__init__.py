"""Evaluation: recall metrics (hitrate@B, truncated hitrate, beams-to-target, clk/exp/pvr, items@N),
the BM25 and dense baselines, and the ``reports/metrics.json`` builder.

bm25s, faiss, matplotlib and rich are imported where they are used, so ``import genrecall.eval``
stays cheap.
"""

from genrecall.eval.baselines import BM25Config, BM25Retriever, DenseConfig, DenseRetriever, SearchResult
from genrecall.eval.metrics import (
    SWEEP,
    EvalConfig,
    GeneratorMetrics,
    GeneratorRun,
    ItemMetrics,
    PairRanks,
    PersonalizedMetrics,
    beams_to_target,
    evaluate_generator,
    evaluate_ranked_items,
    first_ranks,
    personalized_metrics,
)
from genrecall.eval.report import (
    baseline_target,
    build_metrics,
    metrics_block,
    plot_hitrate,
    print_summary,
    read_metrics,
    write_curves,
    write_metrics,
)

__all__ = [
    "SWEEP",
    "BM25Config",
    "BM25Retriever",
    "DenseConfig",
    "DenseRetriever",
    "EvalConfig",
    "GeneratorMetrics",
    "GeneratorRun",
    "ItemMetrics",
    "PairRanks",
    "PersonalizedMetrics",
    "SearchResult",
    "baseline_target",
    "beams_to_target",
    "build_metrics",
    "evaluate_generator",
    "evaluate_ranked_items",
    "first_ranks",
    "metrics_block",
    "personalized_metrics",
    "plot_hitrate",
    "print_summary",
    "read_metrics",
    "write_curves",
    "write_metrics",
]
