"""A serving bundle from an `eval-real` work directory, to measure serving on a real catalog.

    python benchmarks/make_judged_bundle.py --work reports/homedepot \\
        --products ../shared/data/homedepot/products.csv --train data/hd/train.csv --out reports/hd-bundle
    python benchmarks/bench_serving.py --bundle reports/hd-bundle --beams 20 50 --concurrency 1 8 --in-process

The bundle holds the CQ-SID generator eval-real trained (Q2SID's final checkpoint, with its semantic
prompt's MiniLM encoder recorded in its config), that method's SID tokenizer and index, and every
product's title. Judged data has no popularity: every item's quality is 0, so items follow beam order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrecall.data.judged import load_judged
from genrecall.serving.bundle import write_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="eval-real work dir (the --out path without its suffix)")
    ap.add_argument("--products", required=True)
    ap.add_argument("--train", required=True, help="the judgments eval-real trained on (for the product table)")
    ap.add_argument("--method", default="cq_sid")
    ap.add_argument("--out", required=True, help="an empty or new directory")
    args = ap.parse_args()
    work = Path(args.work)
    items = load_judged(args.products, args.train).products[["item_id", "title"]].copy()
    items["quality"] = 0.0
    manifest = write_bundle(
        args.out,
        generator_dir=work / "generator" / args.method / "q2sid" / "final",
        sid_model_dir=work / "sid" / args.method,
        index_dir=work / "index" / args.method,
        items=items,
        data_version=f"judged:{Path(args.products).name}",
        params_hash="eval-real",
    )
    print(f"wrote {args.out}: bundle {manifest.version}")


if __name__ == "__main__":
    main()
