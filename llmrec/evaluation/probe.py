"""The catalogue-knowledge probe: does a base model know facts about the catalogue before anyone fine-tunes it?

From the dataset's knowledge graph (`llmrec.knowledge.statements`) come true statements about items ("Fargo (1996)
was directed by the director of Raising Arizona (1987).") and, for each, a corrupted twin (the same sentence with
one item replaced by a catalogue item for which the KG says it is false). Each model, with no adapter, is asked
whether the statement is true, through its own chat template; its score is the margin of the "Yes" logit over
the "No" logit at the answer position (the pointwise scorer, `llmrec.ranking.PointwiseScorer`, so the prompts of
a chunk share their encoded prefix). Per relation and per model the report gives the AUC of the true statements'
margins against the corrupted ones', with a percentile bootstrap CI over (true, corrupted) pairs
(`llmrec.evaluation.significance.bootstrap_pooled_auc`): 0.5 is chance, 1 a model that always prefers the fact.

Run it as any study (``llmrec eval eval/ml100k-knowledge-probe.yaml``) with ``protocol: {kind: knowledge_probe,
relations: [...], pairs: N}`` and ``kind: llm`` arms that name a model and no adapter. The report folder gets
``metrics.json``, ``report.md`` and ``statements.jsonl.gz`` (every statement with every model's margin);
``llmrec eval CONFIG --verify`` scores a seeded sample of those statements again and compares.

Example:
    >>> config = load_config("eval/ml100k-knowledge-probe.yaml")  # doctest: +SKIP
    >>> summary = write_probe_report(run_probe(config))  # doctest: +SKIP
    >>> summary["arms"]["qwen2.5-coder-1.5b"]["relations"]["director"]["auc"]  # doctest: +SKIP
    0.65
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.config import ArmConfig, ExperimentConfig
from llmrec.evaluation.provenance import check_pinnable, provenance
from llmrec.evaluation.significance import bootstrap_pooled_auc
from llmrec.io import atomic_write_bytes, atomic_write_text
from llmrec.knowledge.statements import RELATIONS, STATEMENTS_VERSION, Statement, probe_statements
from llmrec.prompts import RenderedPrompt, label_token_ids
from llmrec.prompts.builder import special_strings, without_specials
from llmrec.prompts.labels import DEFAULT_CONTEXT

log = logging.getLogger(__name__)

#: Bump when the probe asks or scores otherwise (another question, chunking that changes scores).
PROBE_VERSION = 1
#: What the model is asked; the statement comes last, so every prompt of a chunk shares the prefix before it.
QUESTION = "Is the following statement true? Answer Yes or No.\n\n{statement}"
ANSWER_WORDS = ("Yes", "No")
STATEMENTS_FILE = "statements.jsonl.gz"
#: Prompts handed to the scorer at once (one encoded prefix, suffixes in batches of `BATCH_SIZE`).
CHUNK = 32
BATCH_SIZE = 8
#: Statements per arm rescored by ``--verify`` (a seeded sample, true and corrupted alike).
VERIFY_STATEMENTS = 8


@dataclass
class ProbeArmResult:
    """One model's margins over the probe's statements (statement order) and what they cost."""

    config: ArmConfig
    margins: list[float]
    seconds: float = 0.0
    load_seconds: float = 0.0
    prompt_tokens: int = 0
    forward_passes: int = 0
    dtype: str | None = None


@dataclass
class ProbeResult:
    """Everything a probe run produced: the statements, each arm's margins, the dataset's fingerprint."""

    config: ExperimentConfig
    statements: list[Statement]
    available: dict[str, int]
    arms: dict[str, ProbeArmResult] = field(default_factory=dict)
    dataset_fingerprint: str = ""


def build_statements(config: ExperimentConfig, dataset: Any) -> tuple[list[Statement], dict[str, int]]:
    """The probe's statements, relation by relation in config order (true, corrupted, true, ...), and per relation
    how many true statements the KG held.

    Raises:
        ConfigError: the config is not a knowledge probe, or a relation cannot be probed on this dataset
            (`llmrec.knowledge.statements.probe_statements`).
    """
    from llmrec.knowledge import KnowledgeGraph

    protocol = config.protocol
    if protocol.kind != "knowledge_probe" or protocol.relations is None:
        raise ConfigError(f"experiment {config.name!r} is not a knowledge probe (protocol {protocol.kind!r})")
    assert protocol.pairs is not None and protocol.min_pairs is not None
    kg = KnowledgeGraph.from_dataset(dataset)
    statements: list[Statement] = []
    available: dict[str, int] = {}
    for name in protocol.relations:
        drawn = probe_statements(
            kg, dataset.items, name, pairs=protocol.pairs, seed=config.seed, min_pairs=protocol.min_pairs,
            dataset=f"dataset {dataset.name!r}",
        )  # fmt: skip
        if len(drawn.statements) < 2 * protocol.pairs:
            log.info("relation %s: the KG holds %d true statements, all used", name, drawn.available)
        statements.extend(drawn.statements)
        available[name] = drawn.available
    return statements, available


def _wrap(tokenizer: Any, body: str) -> tuple[str, bool]:
    """The question as the model reads it: its chat template with the generation prompt (chat models), or the text
    and the answer cue (base models). Returns the text and whether a chat template was applied."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": body}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)), True
    return f"{body}\n{DEFAULT_CONTEXT}", False


def probe_prompts(tokenizer: Any, statements: Sequence[Statement]) -> list[RenderedPrompt]:
    """One yes/no prompt per statement, for the pointwise scorer (candidate id ``s<index>``).

    Raises:
        LabelTokenError: "Yes" or "No" is not a single token right after the prompt for this tokenizer.
    """
    context, chat = _wrap(tokenizer, "x")
    answer_ids = tuple(label_token_ids(tokenizer, list(ANSWER_WORDS), context=context))
    specials = special_strings(tokenizer)
    prompts = []
    for n, statement in enumerate(statements):
        shown = without_specials(statement.text, specials)  # a title may hold a control token's text: data
        text, _ = _wrap(tokenizer, QUESTION.format(statement=shown))
        prompts.append(
            RenderedPrompt(
                text=text,
                n_tokens=len(tokenizer(text, add_special_tokens=not chat)["input_ids"]),
                candidate_ids=(f"s{n}",),
                labels=(),
                answer_tokens=ANSWER_WORDS,
                facts=MappingProxyType({}),
                metadata=MappingProxyType({"relation": statement.relation, "chat": chat}),
                answer_token_ids=answer_ids,
                add_special_tokens=not chat,
            )
        )
    return prompts


def score_statements(
    lm: Any, statements: Sequence[Statement], *, progress: bool = False, desc: str = "probe"
) -> ProbeArmResult:
    """Score every statement with the loaded model: the Yes-minus-No logit margin, in statement order.

    Chunks of `CHUNK` prompts go to the pointwise scorer (`llmrec.ranking.make_scorer`), which encodes their
    shared prefix once and their statements in batches of `BATCH_SIZE`.
    """
    from tqdm.auto import tqdm

    from llmrec.ranking.factory import make_scorer

    scorer = make_scorer("pointwise", lm, batch_size=BATCH_SIZE)
    prompts = probe_prompts(lm.tokenizer, statements)
    result = ProbeArmResult(config=ArmConfig(name="probe", kind="llm"), margins=[])
    bar = tqdm(total=len(prompts), desc=desc, unit="stmt", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    for begin in range(0, len(prompts), CHUNK):
        chunk = prompts[begin : begin + CHUNK]
        scored = scorer.score(chunk)
        by_id = dict(zip(scored.candidate_ids, scored.scores, strict=True))
        result.margins.extend(float(by_id[p.candidate_ids[0]]) for p in chunk)
        result.prompt_tokens += scored.prompt_tokens
        result.forward_passes += scored.forward_passes
        bar.update(len(chunk))
    bar.close()
    result.seconds = time.perf_counter() - start
    return result


def _load(arm: ArmConfig) -> Any:
    from llmrec.models import ModelConfig, load_model
    from llmrec.models.machine import pinned_dtype

    return load_model(
        ModelConfig(str(arm.model), quantization=str(arm.quantization), dtype=pinned_dtype(str(arm.dtype))),
        cache=False,
    )


def run_probe(
    config: ExperimentConfig, *, arms: Sequence[str] | None = None, progress: bool = True, dataset: Any = None
) -> ProbeResult:
    """Draw the statements of a ``knowledge_probe`` config and score them with every arm (or those in `arms`).

    Raises:
        ConfigError: not a knowledge probe, an unknown arm, or a relation the dataset's KG cannot probe.
    """
    from llmrec.evaluation.runner import dataset_fingerprint, load_experiment_dataset

    chosen = config.arms_named(arms)
    dataset = dataset if dataset is not None else load_experiment_dataset(config)
    statements, available = build_statements(config, dataset)
    result = ProbeResult(config, statements, available, dataset_fingerprint=dataset_fingerprint(dataset))
    for arm in chosen:
        lm = _load(arm)
        scored = score_statements(lm, statements, progress=progress, desc=f"{config.name}/{arm.name}")
        scored.config, scored.load_seconds, scored.dtype = arm, lm.load_seconds, lm.dtype
        result.arms[arm.name] = scored
        log.info(
            "arm %s: %d statements in %.1fs (%.2fs each; model loaded in %.1fs)",
            arm.name, len(statements), scored.seconds, scored.seconds / max(1, len(statements)), lm.load_seconds,
        )  # fmt: skip
        del lm  # one model in memory at a time
    return result


# -- summary and report ---------------------------------------------------------------------------------------------


def _auc_row(
    statements: Sequence[Statement], margins: Sequence[float], config: ExperimentConfig
) -> dict[str, float | int]:
    """AUC of true against corrupted margins with its paired bootstrap CI, the share of pairs whose true statement
    scores above its corrupted twin (a tie counts one half) and the mean margins."""
    true: dict[tuple[str, int], float] = {}
    false: dict[tuple[str, int], float] = {}
    for s, m in zip(statements, margins, strict=True):
        (true if s.true else false)[(s.relation, s.pair)] = m
    keys = sorted(true)
    positives = [true[k] for k in keys]
    negatives = [[false[k]] for k in keys]
    interval = bootstrap_pooled_auc(
        positives, negatives, samples=config.bootstrap_samples, confidence=config.confidence, seed=config.seed
    )
    wins = [1.0 if t > f[0] else 0.5 if t == f[0] else 0.0 for t, f in zip(positives, negatives, strict=True)]
    return {
        "auc": interval.mean,
        "low": interval.low,
        "high": interval.high,
        "n_true": len(positives),
        "n_corrupted": len(negatives),
        "pair_accuracy": sum(wins) / len(wins),
        "mean_margin_true": sum(positives) / len(positives),
        "mean_margin_corrupted": sum(f[0] for f in negatives) / len(negatives),
    }


def summarize_probe(result: ProbeResult) -> dict[str, Any]:
    """The probe's ``metrics.json``: settings, statements per relation, per arm and relation the AUC with its CI,
    costs, and what made it (commit, dataset fingerprint, versions)."""
    from llmrec.evaluation.cache import behaviour_versions

    cfg = result.config
    relations = list(result.available)
    by_relation = {r: [n for n, s in enumerate(result.statements) if s.relation == r] for r in relations}
    rel_summary: dict[str, Any] = {}
    for r in relations:
        own = [result.statements[n] for n in by_relation[r]]
        first_true = next(s for s in own if s.true)
        twin = next(s for s in own if not s.true and s.pair == first_true.pair)
        rel_summary[r] = {
            "sentence": RELATIONS[r].sentence,
            "available": result.available[r],
            "pairs": sum(s.true for s in own),
            "example_true": first_true.text,
            "example_corrupted": twin.text,
        }
    arms: dict[str, Any] = {}
    for name, arm in result.arms.items():
        per_relation = {
            r: _auc_row([result.statements[n] for n in idx], [arm.margins[n] for n in idx], cfg)
            for r, idx in by_relation.items()
        }
        arms[name] = {
            "model": arm.config.model,
            "dtype": arm.dtype,
            "quantization": arm.config.quantization,
            "relations": per_relation,
            "all": _auc_row(result.statements, arm.margins, cfg),
            "statements": len(arm.margins),
            "seconds": arm.seconds,
            "seconds_per_statement": arm.seconds / max(1, len(arm.margins)),
            "load_seconds": arm.load_seconds,
            "prompt_tokens": arm.prompt_tokens,
            "forward_passes": arm.forward_passes,
        }
    versions = {**behaviour_versions(), "probe": PROBE_VERSION, "statements": STATEMENTS_VERSION}
    return {
        "experiment": cfg.name,
        "description": cfg.description,
        "dataset": cfg.dataset,
        "protocol": cfg.protocol.as_dict(),
        "seed": cfg.seed,
        "bootstrap_samples": cfg.bootstrap_samples,
        "confidence": cfg.confidence,
        "question": QUESTION,
        "answer_words": list(ANSWER_WORDS),
        "relations": rel_summary,
        "arms": arms,
        "provenance": provenance(result.dataset_fingerprint, versions),
    }


def _cell(row: Mapping[str, Any]) -> str:
    return f"{row['auc']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"


def render_probe_markdown(summary: Mapping[str, Any]) -> str:
    """``report.md`` of a probe: settings, the AUC table (arms as rows, relations as columns), costs, examples."""
    relations = list(summary["relations"])
    conf = f"{100 * summary['confidence']:g}%"
    record = summary["provenance"]
    commit = record.get("commit")
    made = f"commit `{commit[:12]}`" if commit else "an llmrec install outside git"
    if record.get("uncommitted_changes"):
        made += f" with uncommitted changes to {len(record['uncommitted_changes'])} file(s)"
    libs = record.get("libraries", {})
    versions = ", ".join(f"{k} {libs[k]}" for k in ("llmrec", "torch", "transformers") if k in libs)
    lines = [f"# Knowledge probe: {summary['experiment']}", ""]
    if summary.get("description"):
        lines += [summary["description"].strip(), ""]
    lines += [
        f"- Dataset: `{summary['dataset']}`; statements from its knowledge graph and item metadata, seed "
        f"{summary['seed']}: per relation up to {summary['protocol']['pairs']} true statements and, for each, the "
        "same sentence with one item replaced by a catalogue item for which the KG says it is false.",
        f'- Each model, no adapter, is asked through its own chat template: "{summary["question"].splitlines()[0]}" '
        f"followed by the statement; score = logit({summary['answer_words'][0]}) - logit({summary['answer_words'][1]}) "
        "at the answer position.",
        f"- AUC of true against corrupted margins (0.5 = chance); {conf} percentile bootstrap CI over (true, corrupted) "
        f"pairs ({summary['bootstrap_samples']} resamples). `all`: every relation's pairs pooled.",
        f"- Made by {made} ({versions}); dataset content `{record.get('dataset_fingerprint')}`. "
        "`llmrec eval CONFIG --verify` rescores a sample of `statements.jsonl.gz`.",
        "",
        "## AUC per relation",
        "",
        "| arm | model | " + " | ".join(relations) + " | all |",
        "|---|---|" + "---|" * (len(relations) + 1),
    ]
    for name, arm in summary["arms"].items():
        cells = [_cell(arm["relations"][r]) for r in relations] + [_cell(arm["all"])]
        lines.append(f"| {name} | `{arm['model']}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Pairs per relation (true + corrupted): "
        + ", ".join(
            f"{r} {v['pairs']} + {v['pairs']} (of {v['available']} true in the KG)"
            for r, v in summary["relations"].items()
        )
        + ".",
        "",
        "## Share of pairs whose true statement scores above its corrupted twin",
        "",
        "| arm | " + " | ".join(relations) + " | all |",
        "|---|" + "---|" * (len(relations) + 1),
    ]
    for name, arm in summary["arms"].items():
        cells = [f"{arm['relations'][r]['pair_accuracy']:.3f}" for r in relations] + [
            f"{arm['all']['pair_accuracy']:.3f}"
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost",
        "",
        "| arm | dtype | statements | prompt tokens | forward passes | seconds | s / statement | load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in summary["arms"].items():
        lines.append(
            f"| {name} | {arm['dtype']} | {arm['statements']} | {arm['prompt_tokens']} | {arm['forward_passes']} | "
            f"{arm['seconds']:.1f} | {arm['seconds_per_statement']:.3f} | {arm['load_seconds']:.1f} |"
        )
    threads = record.get("compute", {}).get("torch_threads")
    lines += [
        "",
        f"Torch threads: {threads}; CPU kernels: {record.get('compute', {}).get('cpu_capability')}.",
        "",
    ]
    lines += [
        "## Statements (first pair of each relation)",
        "",
        "| relation | true | corrupted |",
        "|---|---|---|",
    ]
    for r, v in summary["relations"].items():
        lines.append(f"| {r} | {v['example_true']} | {v['example_corrupted']} |")
    lines += ["", "_Generated by `llmrec eval` (knowledge_probe protocol)._", ""]
    return "\n".join(lines)


def write_statements(result: ProbeResult, summary: Mapping[str, Any], folder: Path) -> Path:
    """``statements.jsonl.gz``: a header, then every statement with each arm's margin."""
    header = {
        "format": 1,
        "experiment": result.config.name,
        "commit": summary["provenance"].get("commit"),
        "dataset_fingerprint": result.dataset_fingerprint,
        "arms": list(result.arms),
    }
    lines = [json.dumps(header, sort_keys=True)]
    for n, s in enumerate(result.statements):
        row = {
            "relation": s.relation, "pair": s.pair, "true": s.true, "items": list(s.items), "value": s.value,
            "text": s.text, "margins": {a: r.margins[n] for a, r in result.arms.items()},
        }  # fmt: skip
        lines.append(json.dumps(row, sort_keys=True))
    path = folder / STATEMENTS_FILE
    atomic_write_bytes(path, gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return path


def write_probe_report(
    result: ProbeResult, folder: str | Path | None = None, *, allow_dirty: bool = False
) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and ``statements.jsonl.gz`` into `folder` (default
    ``config.results_path()``).

    Raises:
        DirtyTreeError: `folder` lies in the llmrec checkout, whose sources have uncommitted changes, unless
            `allow_dirty` (as `llmrec.evaluation.report.write_report`).
    """
    from llmrec.evaluation.report import jsonable

    out = Path(folder) if folder is not None else result.config.results_path()
    summary = summarize_probe(result)
    check_pinnable(out, summary["provenance"], allow_dirty=allow_dirty)
    out.mkdir(parents=True, exist_ok=True)
    write_statements(result, summary, out)
    atomic_write_text(out / "metrics.json", json.dumps(jsonable(summary), indent=2) + "\n")
    atomic_write_text(out / "report.md", render_probe_markdown(summary))
    log.info("probe report written to %s", out)
    return summary


# -- replay ---------------------------------------------------------------------------------------------------------


def read_statements(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and rows of a probe report's ``statements.jsonl.gz``.

    Raises:
        ConfigError: the file is missing.
    """
    path = Path(folder) / STATEMENTS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: no probe report to verify (run the probe first)")
    rows = [
        json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines() if line.strip()
    ]
    return rows[0], rows[1:]


@dataclass(frozen=True)
class ProbeCheck:
    """The replay of one arm: statements rescored, the largest margin difference and its tolerance."""

    arm: str
    statements: int
    max_diff: float
    tolerance: float
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.max_diff <= self.tolerance


def verify_probe(
    config: ExperimentConfig, folder: str | Path | None = None, *, statements: int = VERIFY_STATEMENTS
) -> list[ProbeCheck]:
    """Rescore a seeded sample of `statements` statements per arm of the committed probe report and compare the
    margins (tolerance from the arm's dtype and the margins' scale, `llmrec.evaluation.verify.score_tolerance`).
    The statements are drawn again from the dataset: a draw that no longer matches the committed one fails."""
    from llmrec.evaluation.runner import dataset_fingerprint, load_experiment_dataset
    from llmrec.evaluation.verify import score_tolerance

    folder = Path(folder) if folder is not None else config.results_path()
    header, rows = read_statements(folder)
    dataset = load_experiment_dataset(config)
    if header.get("dataset_fingerprint") != dataset_fingerprint(dataset):
        raise ConfigError(
            f"{folder}: the report was made on other dataset content than {config.dataset!r} now has"
        )
    drawn, _ = build_statements(config, dataset)
    if [s.text for s in drawn] != [r["text"] for r in rows]:
        return [
            ProbeCheck(a, 0, math.inf, 0.0, "the statements drawn now differ from the report's")
            for a in header["arms"]
        ]
    sample = sorted(
        random.Random(f"llmrec-verify:{config.name}").sample(range(len(rows)), min(statements, len(rows)))
    )
    checks = []
    for arm in config.arms:
        if arm.name not in header["arms"]:
            checks.append(ProbeCheck(arm.name, 0, math.inf, 0.0, "not in the committed report"))
            continue
        scored = score_statements(_load(arm), [drawn[n] for n in sample])
        committed = [rows[n]["margins"][arm.name] for n in sample]
        diff = max(abs(a - b) for a, b in zip(scored.margins, committed, strict=True))
        checks.append(ProbeCheck(arm.name, len(sample), diff, score_tolerance(arm, committed)))
    return checks
