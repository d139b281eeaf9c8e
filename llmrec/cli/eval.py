"""`llmrec eval CONFIG [--users N] [--json]`: run an experiment config and write its report folder."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="run an offline evaluation experiment (YAML config) and write its report",
        description=(
            "Run every arm of an experiment config over a dataset split and write eval/results/<experiment>/ "
            "(metrics.json, report.md, PNG plots). Per-(arm, user) results are cached, so an interrupted run "
            "resumes and an unchanged arm is not recomputed."
        ),
    )
    parser.add_argument("config", help="experiment YAML file (see eval/*.yaml)")
    parser.add_argument("--users", type=int, default=None, help="evaluate a seeded sample of N users")
    parser.add_argument(
        "--arms", default=None, help="comma-separated arm names to run (the baseline is always run)"
    )
    parser.add_argument("--out", default=None, help="report folder (default: eval/results/<experiment>/)")
    parser.add_argument(
        "--cache-dir", default=None, help="per-(arm, user) result cache folder (overrides the config)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--json", action="store_true", help='print {"arms": {NAME: {METRIC: value}}} as JSON')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmrec.errors import ConfigError
    from llmrec.evaluation import load_config, metrics_table, run_experiment, write_report
    from llmrec.evaluation.report import DELTA_TITLES, delta_metric, jsonable

    if args.users is not None and args.users < 1:
        raise ConfigError(f"--users must be >= 1, got {args.users}")
    config = load_config(args.config)
    if args.cache_dir is not None:
        config = dataclasses.replace(config, cache_dir=args.cache_dir)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    result = run_experiment(config, users=args.users, arms=arms, progress=not args.no_progress)
    out = args.out if args.out is not None else result.config.results_path()
    summary = write_report(result, out, plots=not args.no_plots)
    if args.json:
        print(json.dumps(jsonable({"arms": metrics_table(summary)}), indent=2))
        return 0
    headline = summary["headline_metric"]
    compared = delta_metric(summary["protocol"]["kind"])
    print(f"{summary['experiment']}: {summary['users_sampled']} users, report in {out}")
    for name, arm in summary["arms"].items():
        m = arm["metrics"]
        vs = arm.get("vs_baseline", {}).get(compared)
        delta = (
            ""
            if vs is None
            else f"  Δ{DELTA_TITLES[compared]} {vs['diff']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}]"
        )
        print(
            f"  {name:<28} users {arm['users']:>4}  {headline} {m[headline]:.4f}  HR@10 {m['hr@10']:.4f}  "
            f"MRR {m['mrr']:.4f}{delta}"
        )
    rec = summary.get("recommendation") or {}
    if rec.get("pick"):
        print(f"pick: {rec['pick']} -- {rec['reason']}")
    return 0
