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
    parser.add_argument(
        "--out",
        default=None,
        help="report folder (default: eval/results/<experiment>/; a run of part of the experiment, --arms or "
        "another --users than the config's, goes to eval/results/<experiment>/partial/ so the full report stays)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="per-(arm, user) result cache folder (overrides the config)"
    )
    parser.add_argument(
        "--no-score-memo",
        action="store_true",
        help="score every prompt with the model, even one whose scores are in the score memo "
        "(score-memo/ in the cache folder: scores keyed on the prompts, model, adapter and scoring code)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="write the report into the checkout although its sources have uncommitted changes (the report lists "
        "them; by default that is refused, since the commit it records did not make it)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="instead of running, replay a seeded sample of users of every arm of the committed report (its "
        "users.jsonl.gz) with this checkout's code, no cache: arms without an LLM to float64 rounding, LLM arms "
        "within the dtype's tolerance; the target's rank must be the same; exits 1 on a mismatch",
    )
    parser.add_argument(
        "--verify-users", type=int, default=20, help="--verify: users per arm without an LLM (default 20)"
    )
    parser.add_argument("--verify-llm-users", type=int, default=3, help="--verify: users per LLM arm (default 3)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--json", action="store_true", help='print {"arms": {NAME: {METRIC: value}}} as JSON')
    parser.add_argument(
        "--fit-fusion",
        metavar="ARM",
        default=None,
        help="after the run, fit the score-fusion weights of LLM arm ARM with the first-stage --fusion-members "
        "(the config must evaluate validation targets: split.target: valid)",
    )
    parser.add_argument(
        "--fusion-members",
        default="zfusion",
        help="first-stage retrievers fused with the LLM (default: zfusion, the default first stage's own score: the "
        "LLM on top of its first stage, as the default Reranker applies it; or e.g. sasrec,ease,dense)",
    )
    parser.add_argument(
        "--write-card", action="store_true", help="store the fitted fusion in the arm's adapter card (key fusion)"
    )
    parser.add_argument(
        "--keep-llm-weight",
        action="store_true",
        help="keep the LLM's fitted fusion weight even when cross-validation on the validation users says it does "
        "not raise NDCG@10 (by default such an LLM gets weight 0; keep it to measure what the LLM adds)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmrec.errors import ConfigError
    from llmrec.evaluation import load_config, metrics_table, run_experiment, write_report
    from llmrec.evaluation.report import jsonable
    from llmrec.evaluation.summary import DELTA_TITLES, delta_metric

    if args.users is not None and args.users < 1:
        raise ConfigError(f"--users must be >= 1, got {args.users}")
    config = load_config(args.config)
    if config.protocol.kind == "knowledge_probe":
        return _probe(config, args)
    if args.verify:
        return _verify(config, args)
    if args.cache_dir is not None:
        config = dataclasses.replace(config, cache_dir=args.cache_dir)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    result = run_experiment(
        config,
        users=args.users,
        arms=arms,
        progress=not args.no_progress,
        score_memo=not args.no_score_memo,
    )
    if not result.arms:  # a non-main process of a data-parallel run: the main process writes the report
        return 0
    partial = bool(arms is not None and {a.name for a in config.arms} - set(result.arms)) or (
        args.users is not None and args.users != config.users
    )
    if args.out is not None:
        out = args.out
    else:
        out = config.results_path() / "partial" if partial else config.results_path()
    summary = write_report(result, out, plots=not args.no_plots, allow_dirty=args.allow_dirty)
    if partial and args.out is None and not args.json:
        print(f"a run of part of the experiment: report in {out}, {config.results_path()} left as it was")
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
    if args.fit_fusion:
        _fit_fusion(result, args)
    return 0


def _probe(config: Any, args: argparse.Namespace) -> int:
    """A ``knowledge_probe`` config: score its statements with every arm and write the probe report (or replay it)."""
    from llmrec.errors import ConfigError
    from llmrec.evaluation.probe import run_probe, verify_probe, write_probe_report

    for option in ("users", "fit_fusion"):
        if getattr(args, option) is not None:
            raise ConfigError(f"--{option.replace('_', '-')} does not apply to a knowledge_probe config")
    if args.verify:
        checks = verify_probe(config, args.out)
        for c in checks:
            detail = c.problem or f"{c.statements} statements, max |diff| {c.max_diff:.3g} (tolerance {c.tolerance:.3g})"
            print(f"  {c.arm:<36} {'ok' if c.ok else 'FAILED':<7}{detail}")
        print(f"{config.name}: {sum(c.ok for c in checks)} of {len(checks)} arms replay as committed")
        return 0 if all(c.ok for c in checks) else 1
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    result = run_probe(config, arms=arms, progress=not args.no_progress)
    partial = bool(arms is not None and {a.name for a in config.arms} - set(result.arms))
    out = args.out if args.out is not None else config.results_path() / "partial" if partial else config.results_path()
    summary = write_probe_report(result, out, allow_dirty=args.allow_dirty)
    if args.json:
        print(json.dumps({"arms": {n: {r: v["auc"] for r, v in {**a["relations"], "all": a["all"]}.items()}
                                   for n, a in summary["arms"].items()}}, indent=2))  # fmt: skip
        return 0
    print(f"{summary['experiment']}: knowledge probe, report in {out}")
    for name, arm in summary["arms"].items():
        cells = "  ".join(
            f"{r} {v['auc']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for r, v in {**arm["relations"], "all": arm["all"]}.items()
        )
        print(f"  {name:<24} {cells}  ({arm['seconds']:.0f} s)")
    return 0


def _verify(config: Any, args: argparse.Namespace) -> int:
    """`--verify`: replay the committed report's sampled users and print one line per report row."""
    from llmrec.errors import ConfigError
    from llmrec.evaluation.verify import iter_problems, verify_study

    for name in ("verify_users", "verify_llm_users"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    checks = verify_study(config, args.out, users=args.verify_users, llm_users=args.verify_llm_users)
    for check in checks:
        detail = (
            "" if check.skipped is not None
            else f" {check.users} users, max |diff| {check.max_diff:.3g} (tolerance {check.tolerance:.3g})"
        )  # fmt: skip
        print(f"  {check.row:<36} {check.status:<7}{detail}")
    problems = list(iter_problems(checks))
    for problem in problems:
        print(f"  {problem}")
    bad = [c.row for c in checks if not c.ok]
    skipped = sum(c.skipped is not None for c in checks)
    replayed = len(checks) - len(bad) - skipped
    print(
        f"{config.name}: {replayed} of {len(checks)} rows replay as committed"
        + (f", {skipped} skipped (see above)" if skipped else "")
    )
    return 1 if bad else 0


def _fit_fusion(result: Any, args: argparse.Namespace) -> None:
    """Fit the fusion weights of one LLM arm on this (validation) run; optionally write them into its card."""
    from llmrec.errors import ConfigError
    from llmrec.evaluation.runner import fit_arm_fusion

    members = [m.strip() for m in args.fusion_members.split(",") if m.strip()]
    fusion = fit_arm_fusion(result, args.fit_fusion, members, keep_llm=args.keep_llm_weight)
    scores = fusion.fitted["ndcg@10"]
    print(
        f"fusion for {args.fit_fusion}: LLM weight {fusion.llm_weight:g}, "
        + ", ".join(f"{m} {w:g}" for m, w in zip(fusion.members, fusion.weights, strict=True))
        + f" (validation NDCG@10 on {fusion.fitted['users']} users: fused {scores['fused']:.4f}, "
        f"LLM alone {scores['llm_alone']:.4f}, {members[0]} alone {scores[members[0]]:.4f})"
    )
    cv = fusion.fitted.get("cv")
    if cv:
        low, high = cv["llm_gain_ci95"]
        print(
            f"  {cv['folds']}-fold cross-validation, held-out NDCG@10: with the LLM {cv['ndcg@10_with_llm']:.4f}, "
            f"without {cv['ndcg@10_without_llm']:.4f}, LLM gain {cv['llm_gain']:+.4f} [{low:+.4f}, {high:+.4f}]"
        )
    if "llm_dropped" in fusion.fitted:
        print(f"  {fusion.fitted['llm_dropped']} (--keep-llm-weight keeps it)")
    if not args.write_card:
        return
    arm = next(a for a in result.config.arms if a.name == args.fit_fusion)
    if arm.adapter is None:
        raise ConfigError(f"arm {arm.name!r} has no adapter whose card could hold the fusion")
    folder = write_card_fusion(arm.adapter, fusion.to_dict())
    print(f"wrote the fusion into {folder}/adapter_card.json")


def write_card_fusion(adapter: str, fusion: dict[str, Any]) -> Any:
    """Set the adapter card's ``fusion`` entry (its README re-rendered); returns the adapter folder."""
    from dataclasses import replace

    from llmrec.models.adapters import read_adapter_card, resolve_adapter, update_card

    folder = resolve_adapter(adapter)
    update_card(folder, replace(read_adapter_card(folder), fusion=fusion))
    return folder
