"""SASRec fit benchmark: the fit before and after a change, side by side, on the data the product and the study fit.

Two arms: ``before``, the SASRec module as it was at a git revision (``--before-rev``; its file is read with
``git show`` and imported on its own, so the working tree is untouched), and ``after``, the working tree's
`llmrec.retrieval.sequential`, each with its own default settings (``--after-settings`` overrides the after arm's,
for sweeps). Two kinds of training data: ``full``, the whole dataset as `llmrec rank DATASET` and `llmrec demo` fit
it, and ``train``, the harness's leave-one-out train split (liked = rating >= 4). Each fit runs through
`SasrecRetriever.fit` into a fresh cache folder (no cached model is ever loaded) and is timed end to end. Reported per
fit: wall time, epochs run and the best epoch, the held-out full-catalogue NDCG@10 that `_train` early-stops on
(each user's last training item), and for ``train`` fits the study's sampled-protocol NDCG@10 on every test user
(target + 19 never-rated items, the ``eval/<dataset>.yaml`` config's protocol and seed). One fit of each arm per
training seed (``--seeds``), the arms alternating; medians over seeds, each value listed. Results merge into one json per ``--out`` folder (one entry per dataset, so an ML-1M
run does not erase the ml-100k one) and the markdown is rendered from all of it.

Usage (one thread, as the other agents on this machine share its two cores):
    OMP_NUM_THREADS=1 python eval/bench_sasrec_fit.py                                 # ml-100k, ~12 minutes
    OMP_NUM_THREADS=1 python eval/bench_sasrec_fit.py --dataset ml-1m --arms after --data train
    OMP_NUM_THREADS=2 python eval/bench_sasrec_fit.py --arms after --data full --label 2-threads
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"ml-100k": "eval/ml100k.yaml", "ml-1m": "eval/ml1m.yaml"}
TARGETS = {"ml-100k": 90.0, "ml-1m": 15 * 60.0}
SHOWN = ("lr", "batch_size", "max_epochs", "schedule", "patience", "dropout")  # the settings the table lists


def load_before(rev: str) -> ModuleType:
    """`llmrec/retrieval/sequential.py` as it was at `rev`, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:llmrec/retrieval/sequential.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-sasrec-before-")) / "sasrec_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("sasrec_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sasrec_before"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def sampled_ndcg(retriever, split, config, cases_memo: dict) -> float:
    """Mean sampled-protocol NDCG@10 of `retriever` on every test user of the study's config."""
    from llmrec.evaluation.protocols import build_cases, user_order
    from llmrec.metrics import ndcg_at, target_rank

    if "cases" not in cases_memo:
        cases_memo["cases"] = build_cases(split, config, user_order(split, config))
    values = [
        ndcg_at(target_rank(retriever.score(list(c.history), list(c.candidates)), c.target_index), 10)
        for c in cases_memo["cases"]
    ]
    return sum(values) / len(values)


def fit_once(module: ModuleType, dataset, settings: dict, keep: Path | None = None) -> dict:
    """One fresh fit through `module.SasrecRetriever.fit`: time, epochs, per-epoch held-out NDCG@10. With `keep`,
    the fitted checkpoint is copied there (e.g. ``$LLMREC_HOME/retrievers``, so a study on the same data loads it)."""
    trajectory: list[float] = []
    original = module._holdout_ndcg

    def recorded(*args, **kwargs):
        score = original(*args, **kwargs)
        trajectory.append(score)
        return score

    module._holdout_ndcg = recorded
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sasrec-") as cache:
            started = time.perf_counter()
            retriever = module.SasrecRetriever.fit(dataset, settings=settings, cache_dir=cache, progress=False)
            seconds = time.perf_counter() - started
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for fitted in Path(cache).glob("sasrec-*.pt"):
                    shutil.copy(fitted, keep / fitted.name)
    finally:
        module._holdout_ndcg = original
    best = max(range(len(trajectory)), key=lambda n: (trajectory[n], -n))
    return {
        "fit_s": seconds,
        "epochs": len(trajectory),  # held-out evaluations (one per epoch unless the module evaluates less often)
        "best_eval": best + 1,
        "holdout_ndcg10": trajectory[best],
        "trajectory": trajectory,
        "retriever": retriever,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(CONFIGS))
    parser.add_argument("--arms", default="before,after")
    parser.add_argument("--data", default="full,train", help="comma-separated: full, train")
    parser.add_argument("--before-rev", default="7c737e6", help="git revision of the 'before' module (default: the last FORMAT_VERSION 2 fit)")
    parser.add_argument("--after-settings", default="{}", help="JSON overrides of the after arm's settings")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds: one fit of each arm per seed")
    parser.add_argument("--label", default="", help="suffix of the entry's key (e.g. 2-threads)")
    parser.add_argument("--note", default="", help="a sentence printed under the entry's table")
    parser.add_argument("--keep", default=None, help="copy the after arm's fitted checkpoints to this folder")
    parser.add_argument("--out", default="eval/results", help="folder for bench_sasrec_fit.{md,json}")
    args = parser.parse_args()

    import torch

    from llmrec.data import PositivePolicy, leave_one_out, load_dataset
    from llmrec.evaluation.config import load_config
    from llmrec.evaluation.protocols import make_split
    from llmrec.models.machine import cpu_description
    from llmrec.retrieval import sequential

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    kinds = [d.strip() for d in args.data.split(",") if d.strip()]
    if set(arms) - {"before", "after"} or set(kinds) - {"full", "train"} or not arms or not kinds:
        parser.error("--arms takes before and/or after, --data full and/or train")
    modules = {"before": load_before(args.before_rev) if "before" in arms else None, "after": sequential}
    overrides = {"before": {}, "after": json.loads(args.after_settings)}
    config = load_config(ROOT / CONFIGS[args.dataset])
    dataset = load_dataset(args.dataset)
    split = make_split(dataset, config)
    assert split.train_dataset.interactions == leave_one_out(dataset, policy=PositivePolicy(4.0)).train_dataset.interactions
    data = {"full": dataset, "train": split.train_dataset}
    cases_memo: dict = {}
    runs: dict = {kind: {arm: [] for arm in arms} for kind in kinds}
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    for seed in seeds:
        for kind in kinds:
            for arm in arms:
                module = modules[arm]
                settings = {**asdict(module.SasrecSettings()), **overrides[arm], "seed": seed}
                keep = Path(args.keep) if args.keep and arm == "after" else None
                run = fit_once(module, data[kind], settings, keep)
                retriever = run.pop("retriever")
                if kind == "train":
                    run["sampled_ndcg10"] = sampled_ndcg(retriever, split, config, cases_memo)
                run["settings"] = settings
                run["load_average"] = os.getloadavg()[0]
                runs[kind][arm].append(run)
                print(
                    f"{args.dataset} {kind:<5} {arm:<6} seed {seed}: fit {run['fit_s']:6.1f} s, "
                    f"{run['epochs']} epochs (best {run['best_eval']}), held-out NDCG@10 {run['holdout_ndcg10']:.4f}"
                    + (f", sampled NDCG@10 {run['sampled_ndcg10']:.4f}" if "sampled_ndcg10" in run else "")
                    + f"  (load {run['load_average']:.1f})",
                    flush=True,
                )
    entry = {
        "dataset": args.dataset,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_description()}",
        "torch_threads": torch.get_num_threads(),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "before_rev": args.before_rev,
        "after_format_version": sequential.FORMAT_VERSION,
        "seeds": seeds,
        "command": "OMP_NUM_THREADS={} python eval/bench_sasrec_fit.py {}".format(
            os.environ.get("OMP_NUM_THREADS", "(unset)"), " ".join(sys.argv[1:])
        ).strip(),
        "runs": runs,
        "note": args.note,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench_sasrec_fit.json"
    merged = json.loads(json_path.read_text()) if json_path.is_file() else {}
    key = f"{args.dataset}/{entry['torch_threads']}-thread" + (f"/{args.label}" if args.label else "")
    merged[key] = entry
    json_path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    (out / "bench_sasrec_fit.md").write_text(render(merged))


def _cell(runs: list[dict], field: str, spec: str) -> str:
    """The median of `field` over `runs`, then each run's value in brackets ('' when absent)."""
    median = _median(runs, field)
    if median is None:
        return ""
    each = ", ".join(format(r[field], spec) for r in runs)
    return format(median, spec) + (f" ({each})" if len(runs) > 1 else "")


def _median(runs: list[dict], field: str) -> float | None:
    values = [r[field] for r in runs if field in r]
    return statistics.median(values) if values else None


def render(merged: dict) -> str:
    """The markdown report of every entry in the merged json."""
    lines = [
        "# SASRec fit: before and after (`eval/bench_sasrec_fit.py`)",
        "",
        "Fresh fits (no cached model), timed end to end through `SasrecRetriever.fit`. `full`: the whole dataset, as "
        "`llmrec rank` and `llmrec demo` fit it; `train`: the harness's leave-one-out train split. Held-out NDCG@10: "
        "full-catalogue, each user's last training item, the number `_train` early-stops on and logs; sampled "
        "NDCG@10: the study's protocol (target + 19 never-rated items) on every test user. Medians over training seeds "
        "(each seed's value in brackets). "
        f"Targets (issue 29): ml-100k <= {TARGETS['ml-100k']:.0f} s, ML-1M <= {TARGETS['ml-1m'] / 60:.0f} min, "
        "held-out NDCG@10 within 0.005 of the fit before.",
        "",
    ]
    for key in sorted(merged):
        entry = merged[key]
        lines += [
            f"## {key}",
            "",
            f"`{entry['command']}` on {entry['machine']}, torch threads {entry['torch_threads']}; before = "
            f"`{entry['before_rev']}`, after = FORMAT_VERSION {entry['after_format_version']}.",
            "",
            "| data | arm | seeds | fit (s) | epochs (best) | held-out NDCG@10 | sampled NDCG@10 | load avg | settings |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, arms in entry["runs"].items():
            for arm, runs in arms.items():
                if not runs:
                    continue
                changed = {k: v for k, v in runs[0]["settings"].items() if k in SHOWN}
                lines.append(
                    f"| {kind} | {arm} | {len(runs)} | {_cell(runs, 'fit_s', '.1f')} | "
                    f"{', '.join(str(r['epochs']) + ' (' + str(r['best_eval']) + ')' for r in runs)} | "
                    f"{_cell(runs, 'holdout_ndcg10', '.4f')} | {_cell(runs, 'sampled_ndcg10', '.4f')} | "
                    f"{', '.join(format(r['load_average'], '.1f') for r in runs)} | {json.dumps(changed)} |"
                )
            if "before" in arms and "after" in arms and arms["before"] and arms["after"]:
                b, a = arms["before"], arms["after"]
                ratio = _median(b, "fit_s") / _median(a, "fit_s")
                delta = _median(a, "holdout_ndcg10") - _median(b, "holdout_ndcg10")
                sampled = ""
                if _median(b, "sampled_ndcg10") is not None and _median(a, "sampled_ndcg10") is not None:
                    sampled = f"{_median(a, 'sampled_ndcg10') - _median(b, 'sampled_ndcg10'):+.4f}"
                lines.append(
                    f"| {kind} | **after - before** | | **{ratio:.1f}x faster** | | **{delta:+.4f}** | {sampled} | | |"
                )
        if entry.get("note"):
            lines += ["", entry["note"]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
