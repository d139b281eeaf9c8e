"""End-to-end training on a tiny random model and a synthetic dataset: loss, adapter folder, reload, resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.models.adapters import REQUIRED_FILES
from llmrec.training import (
    CheckpointMismatchError,
    NotEnoughDataError,
    OutputExistsError,
    TrainConfig,
    read_card,
    train,
)


def make_cfg(tmp_path, model_dir, dataset_dir, **over):
    data = {
        "output": str(tmp_path / "adapter"),
        "mode": "listwise",
        "model": {"name_or_path": str(model_dir)},
        "data": {"dataset": str(dataset_dir), "min_history": 3, "positions_per_user": 2},
        "negatives": {"n": 5},
        "prompt": {"template": "listwise"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "optim": {"learning_rate": 0.02, "batch_size": 2, "max_steps": 4, "warmup_ratio": 0.0},
        "validation": {"users": 4, "negatives": 5, "every": 2},
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "save_every": 2,
    }
    cfg = TrainConfig.from_dict(data)
    return cfg.with_overrides(over) if over else cfg


def listwise_scores(model_dir, dataset, adapter=None):
    """Scores of a fixed candidate set from the ranking scorer, with or without the adapter."""
    from llmrec.models import ModelConfig, load_model
    from llmrec.prompts import PromptBuilder
    from llmrec.ranking.listwise import ListwiseScorer

    lm = load_model(ModelConfig(str(model_dir), adapters=[str(adapter)] if adapter else ()))
    builder = PromptBuilder(dataset, lm.tokenizer, "listwise")
    prompts = builder.build(["1", "2", "3"], ["10", "11", "12", "13", "14"])
    return ListwiseScorer(lm).score(prompts).scores


def test_train_writes_a_complete_adapter_that_reloads_and_changes_scores(tmp_path, tiny_model_dir, synth_dir, synth):
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir)
    result = train(cfg, progress=False)
    assert result.steps == 4 and len(result.losses) == 4
    assert all(math.isfinite(x) for x in result.losses)
    out = tmp_path / "adapter"
    assert all((out / name).is_file() for name in REQUIRED_FILES)
    assert (out / "llmrec_base_model.json").is_file()
    assert not (tmp_path / "ckpt").exists()  # checkpoints are removed once the adapter is written
    card = read_card(out)
    assert card["base_model"] == str(tiny_model_dir)
    assert card["mode"] == "listwise" and card["template"] == "listwise" and card["knowledge"] is False
    assert card["lora"]["r"] == 4 and card["training"]["steps"] == 4
    assert card["split"] == "leave_one_out" and card["llmrec_version"]
    val = card["validation"]
    assert [row["step"] for row in val["history"]] == [0, 2, 4]
    assert val["zero_shot"]["step"] == 0 and 0.0 <= val["best"]["ndcg@10"] <= 1.0
    assert val["best_step"] in (2, 4)
    assert "zero-shot" in (out / "README.md").read_text()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4

    base = listwise_scores(tiny_model_dir, synth)
    tuned = listwise_scores(tiny_model_dir, synth, adapter=out)
    assert len(base) == len(tuned) == 5
    assert max(abs(a - b) for a, b in zip(base, tuned)) > 1e-4


def test_existing_output_is_refused_unless_overwrite(tmp_path, tiny_model_dir, synth_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(cfg, progress=False)
    assert (tmp_path / "adapter" / "keep.txt").read_text() == "mine"
    train(cfg.with_overrides({"overwrite": True, "validation.users": 0, "optim.max_steps": 1}), progress=False)
    assert not (tmp_path / "adapter" / "keep.txt").exists()
    assert (tmp_path / "adapter" / "adapter_card.json").is_file()


class Interrupt(Exception):
    pass


def test_interrupted_run_leaves_no_adapter_and_resumes_exactly(tmp_path, tiny_model_dir, synth_dir):
    reference = train(make_cfg(tmp_path / "ref", tiny_model_dir, synth_dir), progress=False)

    cfg = make_cfg(tmp_path / "run", tiny_model_dir, synth_dir)

    def stop_at_3(step, loss):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, progress=False, on_step=stop_at_3)
    assert not (tmp_path / "run" / "adapter").exists()  # a killed run never leaves a finished-looking adapter
    assert (tmp_path / "run" / "ckpt" / "last" / "state.json").is_file()

    changed = cfg.with_overrides({"optim.learning_rate": 0.05})
    with pytest.raises(CheckpointMismatchError, match="--no-resume"):
        train(changed, progress=False)

    resumed = train(cfg, progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert resumed.losses == pytest.approx(reference.losses, rel=1e-4, abs=1e-5)
    assert [r["step"] for r in resumed.validation] == [0, 2, 4]


def test_resume_with_fewer_max_steps_stops_early(tmp_path, tiny_model_dir, synth_dir):
    """An interrupted run can be finished early: resume with a lower --max-steps, same example order."""
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"optim.max_steps": 6, "validation.users": 0})

    def stop_at_3(step, loss):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, progress=False, on_step=stop_at_3)
    first = __import__("json").loads((tmp_path / "ckpt" / "last" / "state.json").read_text())["losses"]
    short = train(cfg.with_overrides({"optim.max_steps": 3}), progress=False)
    assert short.resumed_from == 2 and short.steps == 3
    assert short.losses[:2] == first
    assert read_card(tmp_path / "adapter")["training"]["steps"] == 3


def test_template_mode_mismatch_and_bad_modules(tmp_path, tiny_model_dir, synth_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, mode="pointwise")
    with pytest.raises(ConfigError, match="listwise template"):
        train(cfg, progress=False)
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"lora.target_modules": ["c_attn"]})
    with pytest.raises(ConfigError, match="c_attn"):
        train(cfg, progress=False)
    assert not (tmp_path / "adapter").exists()


def test_too_little_data(tmp_path, tiny_model_dir, synth_dir):
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"data.min_history": 400})
    with pytest.raises(NotEnoughDataError):
        train(cfg, progress=False)


def test_pointwise_training_with_choice_loss(tmp_path, tiny_model_dir, synth_dir, synth, capsys):
    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        synth_dir,
        mode="pointwise",
        **{
            "prompt.template": "pointwise",
            "negatives.n": None,
            "optim.loss": "choices",
            "optim.max_steps": 2,
            "validation.every": None,
            "validation.metric": "auc",
        },
    )
    result = train(cfg, progress=False)
    card = read_card(tmp_path / "adapter")
    assert card["mode"] == "pointwise" and card["negatives"]["n"] == 1
    assert all(math.isfinite(x) for x in result.losses)
    assert 0.0 <= card["validation"]["best"]["auc"] <= 1.0

    # `llmrec rank --adapter` ranks in the mode and template the adapter was trained with, and warns when told
    # to rank in another mode.
    from llmrec.cli import main

    argv = ["rank", str(synth_dir), "--model", str(tiny_model_dir), "--adapter", str(tmp_path / "adapter")]
    argv += ["--user", synth.user_ids[0], "--retriever", "popularity", "-k", "4", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    ranked = json.loads(captured.out)
    assert (ranked["mode"], ranked["template"]) == ("pointwise", "pointwise") and "warning" not in captured.err
    assert main([*argv, "--mode", "listwise"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["mode"] == "listwise"
    assert "trained for pointwise scoring" in captured.err


def test_qlora_on_4bit_weights(tmp_path, tiny_model_dir, synth_dir):
    """QLoRA wiring: NF4 base weights (bitsandbytes), k-bit preparation, adapter saved and reloaded in 4-bit.

    On CPU bitsandbytes warns that its 4-bit kernel has no autograd registration; QLoRA is meant for GPUs, and this
    test checks the path runs and produces a loadable adapter, not the quality of CPU gradients.
    """
    pytest.importorskip("bitsandbytes")
    from llmrec.models import ModelConfig, load_model

    cfg = make_cfg(
        tmp_path, tiny_model_dir, synth_dir, **{"model.quantization": "4bit", "optim.max_steps": 2, "validation.users": 0}
    )
    result = train(cfg, progress=False)
    assert all(math.isfinite(x) for x in result.losses)
    card = read_card(tmp_path / "adapter")
    assert card["quantization"] == "4bit" and card["validation"] == {}
    lm = load_model(ModelConfig(str(tiny_model_dir), quantization="4bit", adapters=[str(tmp_path / "adapter")]))
    assert lm.adapter_names == ("adapter",)
    assert any(type(m).__name__ == "Linear4bit" for m in lm.model.modules())


def test_disk_full_while_saving_leaves_nothing(tmp_path, tiny_model_dir, synth_dir, monkeypatch):
    """Running out of disk mid-save: a one-line LlmrecError, no output folder, no temporary folder left behind."""
    import errno
    from pathlib import Path

    from llmrec.errors import LlmrecError

    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"optim.max_steps": 1, "validation.users": 0})
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "README.md" and self.parent.name.startswith(".adapter."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(LlmrecError, match="No space left on device"):
        train(cfg, progress=False)
    assert not (tmp_path / "adapter").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".adapter.")]


def test_keyboard_interrupt_checkpoints_finished_steps(tmp_path, tiny_model_dir, synth_dir):
    """Ctrl-C (or SIGTERM through the CLI) keeps every finished step; resuming at the end still validates."""
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"optim.max_steps": 5, "save_every": 2})

    def ctrl_c_at_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, on_step=ctrl_c_at_3)
    state = json.loads((tmp_path / "ckpt" / "last" / "state.json").read_text())
    assert state["step"] == 3 and len(state["losses"]) == 3
    done = train(cfg.with_overrides({"optim.max_steps": 3}), progress=False)
    assert done.resumed_from == 3 and done.steps == 3
    assert [r["step"] for r in done.validation] == [0, 2, 3]
    assert read_card(tmp_path / "adapter")["validation"]["history"][-1]["step"] == 3


def test_adapter_card_carries_prompt_settings_that_the_reranker_reuses(tmp_path, tiny_model_dir, synth_dir, synth):
    from llmrec.ranking import Reranker, RerankerConfig

    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        synth_dir,
        **{"prompt.candidate_order": "cooc", "prompt.history_budget": 77, "optim.max_steps": 1},
    )
    train(cfg, progress=False)
    card = read_card(tmp_path / "adapter")
    assert card["prompt"]["candidate_order"] == "cooc" and card["prompt"]["history_budget"] == 77
    reranker = Reranker(synth, RerankerConfig(model=str(tiny_model_dir), adapter=str(tmp_path / "adapter")))
    assert reranker.candidate_order == "cooc" and reranker.builder.history_budget == 77
    # explicit settings win over the card
    given = Reranker(
        synth,
        RerankerConfig(
            model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"), candidate_order="given", history_budget=50
        ),
    )
    assert given.candidate_order == "given" and given.builder.history_budget == 50


def test_unknown_candidate_order_is_named(tmp_path, tiny_model_dir, synth_dir):
    with pytest.raises(ConfigError, match="prompt.candidate_order must be one of"):
        make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"prompt.candidate_order": "fusion"})


def test_negative_retriever_options_reach_the_retriever(tmp_path, tiny_model_dir, synth_dir):
    over = {"negatives.source": "ease", "negatives.options": {"l3": 100.0}}
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **over)
    with pytest.raises(ConfigError, match="l3"):  # EASE has no option l3: the options are passed, not dropped
        train(cfg, progress=False)
    assert not (tmp_path / "adapter").exists()


def test_lora_init_from_continues_a_trained_adapter(tmp_path, tiny_model_dir, synth_dir):
    from llmrec.data import SplitLeakError

    first = make_cfg(tmp_path, tiny_model_dir, synth_dir)
    train(first, progress=False)
    trained = read_card(tmp_path / "adapter")
    more = make_cfg(
        tmp_path, tiny_model_dir, synth_dir, output=str(tmp_path / "more"), **{"lora.init_from": str(tmp_path / "adapter")}
    )
    train(more, progress=False)
    card = read_card(tmp_path / "more")
    # step 0 of the continued run scores the same validation users and negatives as the adapter it starts from
    assert card["validation"]["zero_shot"]["ndcg@10"] == pytest.approx(trained["validation"]["best"]["ndcg@10"])
    assert card["lora"]["init_from"] == str(tmp_path / "adapter")
    assert "which training started from" in (tmp_path / "more" / "README.md").read_text()

    other_shape = make_cfg(
        tmp_path, tiny_model_dir, synth_dir, output=str(tmp_path / "x"),
        **{"lora.init_from": str(tmp_path / "adapter"), "lora.r": 8},
    )
    with pytest.raises(ConfigError, match=r"lora.init_from: .*r 4 \(adapter\) vs 8 \(lora section\)"):
        train(other_shape, progress=False)
    # an adapter that kept users with fewer than 12 positives whole in training saw this run's held-out items
    whole = make_cfg(
        tmp_path, tiny_model_dir, synth_dir, output=str(tmp_path / "whole"), checkpoint_dir=str(tmp_path / "c2"),
        **{"data.min_history": 12, "optim.max_steps": 1},
    )
    train(whole, progress=False)
    leaky = make_cfg(
        tmp_path, tiny_model_dir, synth_dir, output=str(tmp_path / "y"), **{"lora.init_from": str(tmp_path / "whole")}
    )
    with pytest.raises(SplitLeakError, match="held-out item"):
        train(leaky, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_validation_negatives_can_be_drawn_as_the_training_negatives(tmp_path, tiny_model_dir, synth_dir):
    from llmrec.data import load_dataset
    from llmrec.retrieval import build_retriever
    from llmrec.training.run import build_examples, make_builder, make_split

    over = {"negatives.source": "cooc", "validation.source": "training", "optim.max_steps": 1, "validation.every": None}
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **over)
    result = train(cfg, progress=False)
    assert result.card["validation"]["negatives_source"] == "unseen items drawn as in training (all from the cooc retriever's top 5)"
    assert "vs 5 unseen items drawn as in training" in (tmp_path / "adapter" / "README.md").read_text()
    # the validation groups hold the target and the cooc retriever's top 5 unseen items for the history
    from llmrec.models import ModelConfig, load_model

    split = make_split(load_dataset(str(synth_dir)), cfg)
    loaded = load_model(ModelConfig(str(tiny_model_dir)))
    groups = build_examples(cfg, split, make_builder(cfg, split, loaded.tokenizer), loaded, progress=False).val_specs
    cooc = build_retriever("cooc", split.train_dataset)
    assert groups
    for g in groups:
        seen = {x.item_id for x in split.dataset.history(g.user_id)}
        top = [c.item_id for c in cooc.retrieve(list(g.history), 5 + len(seen), exclude=seen)][:5]
        assert set(g.candidates) - {g.target} == set(top)
    with pytest.raises(ConfigError, match="validation.source: must be one of random, training, got 'hard'"):
        make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"validation.source": "hard"})


# a short pointwise run on the choice loss, validated once at the end by AUC
POINTWISE_CHOICES = {
    "prompt.template": "pointwise",
    "optim.loss": "choices",
    "validation.every": None,
    "validation.metric": "auc",
}


def test_pointwise_training_on_a_first_stage_offset(tmp_path, tiny_model_dir, synth_dir):
    over = {
        **POINTWISE_CHOICES,
        "negatives.n": 2,
        "optim.max_steps": 2,
        "offset.retriever": "cooc",
        "offset.scale": 2.0,
    }
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, mode="pointwise", **over)
    result = train(cfg, progress=False)
    assert all(math.isfinite(x) for x in result.losses)
    import yaml

    saved = yaml.safe_load((tmp_path / "adapter" / "train_config.yaml").read_text())
    assert saved["offset"] == {"retriever": "cooc", "scale": 2.0, "reference": 19}
    from llmrec.training.checkpoints import fingerprint

    assert fingerprint(cfg.with_overrides({"offset.retriever": None})) != fingerprint(cfg)
    with pytest.raises(ConfigError, match="offset.retriever: needs optim.loss: choices"):
        cfg.with_overrides({"optim.loss": "vocab"})
    with pytest.raises(ConfigError, match="offset.retriever: applies to pointwise training"):
        cfg.with_overrides({"mode": "listwise", "prompt.template": "listwise"})
    with pytest.raises(ConfigError, match=r"output: the adapter name 'x-0.3' may not contain '\.'"):
        cfg.with_overrides({"output": str(tmp_path / "x-0.3")})
    with pytest.raises(ConfigError, match="offset.retriever: must be one of cooc, popularity, dense, llm_dense, ease or null"):
        cfg.with_overrides({"offset.retriever": "sasrec"})


# Resume fingerprints of committed recipes, recorded before the config gained its `offset` section and
# `model.mixed_precision`: a new config field left at its default must not orphan the checkpoint of a run in flight.
RECORDED_FINGERPRINTS = {
    "smollm2-ml100k-pointwise-residual": "536234ebf7e6d0a9",
    "smollm2-ml100k-listwise-kg": "071015395a40db5f",
    "smollm2-ml100k-pointwise-offset": "3bd19d49794a3298",
}


@pytest.mark.parametrize("recipe", sorted(RECORDED_FINGERPRINTS))
def test_committed_recipes_keep_their_resume_fingerprint(recipe):
    from pathlib import Path

    from llmrec.training.checkpoints import fingerprint

    cfg = TrainConfig.from_file(Path(__file__).parents[2] / "adapters" / f"{recipe}.yaml")
    assert fingerprint(cfg) == RECORDED_FINGERPRINTS[recipe]
    assert fingerprint(cfg.with_overrides({"model.mixed_precision": "bf16"})) != RECORDED_FINGERPRINTS[recipe]


def first_batch_choice_logit_change(cfg):
    """The largest change bfloat16 autocast makes to an answer-choice logit of the run's first micro-batch, through
    the model of step 1 (the base model with LoRA as the identity)."""
    from llmrec.training.loop import answer_logits, collate
    from llmrec.training.run import seeded_accelerator, set_up

    run = set_up(cfg, seeded_accelerator(cfg), 0.0, progress=False)
    batch = collate([run.data.examples[i] for i in run.plan.group(0)[0]], run.loaded.tokenizer, run.device)
    run.model.train()  # as in training
    exact = answer_logits(run.model, batch).detach().float()
    with torch.autocast(run.device.type, dtype=torch.bfloat16):
        rounded = answer_logits(run.model, batch).detach().float()
    choices = batch.choice_ids.clamp(min=0)  # -1 pads a shorter choice list; its column is not in the loss
    mask = batch.choice_ids >= 0
    change = (torch.gather(rounded, 1, choices) - torch.gather(exact, 1, choices)).abs()
    return float(change[mask].max())


def _emulated_capability_on_an_amx_cpu() -> bool:
    """`ATEN_CPU_CAPABILITY` below avx512 (the portable-kernels run of .ci/run) on a CPU with AMX: torch still picks
    its AMX bfloat16 attention kernel, which then refuses to run ('pack_vnni2 is only supported when avx512 is
    supported'). No real CPU is like that: AMX comes with avx512."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() not in ("default", "avx2"):
        return False
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif(
    _emulated_capability_on_an_amx_cpu(),
    reason="bfloat16 attention cannot run with ATEN_CPU_CAPABILITY below avx512 on an AMX CPU (torch picks its AMX "
    "kernel anyway); no real CPU has AMX without avx512, and the test runs under this CPU's own kernels",
)
def test_bf16_mixed_precision_trains_close_to_float32(tmp_path, tiny_model_dir, synth_dir):
    over = {**POINTWISE_CHOICES, "negatives.n": 1, "optim.max_steps": 3}
    losses = {}
    for precision in ("no", "bf16"):
        cfg = make_cfg(
            tmp_path, tiny_model_dir, synth_dir, mode="pointwise", output=str(tmp_path / f"adapter-{precision}"),
            checkpoint_dir=str(tmp_path / f"ckpt-{precision}"), **{**over, "model.mixed_precision": precision},
        )
        losses[precision] = train(cfg, progress=False).losses
        card = read_card(tmp_path / f"adapter-{precision}")
        assert card["training"]["mixed_precision"] == precision
    # Step 1 is the one step both runs take from the same weights (LoRA starts as the identity) on the same
    # micro-batch, so its two losses differ only by bfloat16 autocast's rounding in one forward pass. The loss, a
    # cross-entropy over the answer choices, moves by at most twice the largest change of a choice logit; that
    # change is measured here, with this CPU's own bf16 kernels, so the bound holds on any CPU (seen: gap 0.18,
    # bound 0.46 to 0.52). No such bound exists after step 1: Adam's first update moves each weight by about the
    # learning rate whatever the size of its gradient, so rounding that flips the sign of a small gradient component
    # moves that weight by twice the learning rate; later losses differed by 0.7 to 7 % with the CPU's kernels.
    gap = abs(losses["bf16"][0] - losses["no"][0])
    assert 0 < gap <= 2 * first_batch_choice_logit_change(cfg) + 1e-5  # + the losses' 6-digit rounding
    assert all(math.isfinite(x) for x in losses["bf16"])
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "adapter-bf16" / "adapter_model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values())  # the LoRA stays float32
    with pytest.raises(ConfigError, match=r"model\.mixed_precision: expected one of 'no' \| 'bf16', got 'fp16'"):
        cfg.with_overrides({"model.mixed_precision": "fp16"})


def test_paired_gain_is_the_mean_and_standard_error_of_per_user_differences():
    from llmrec.stats import paired_gain

    gain, se = paired_gain([1.0, 0.5, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0])  # differences 0.5, 0, 1, 0
    assert gain == pytest.approx(0.375)
    assert se == pytest.approx(math.sqrt((0.125**2 + 0.375**2 + 0.625**2 + 0.375**2) / 3 / 4))
    with pytest.raises(ValueError, match="two equally long lists"):
        paired_gain([1.0, 0.0], [1.0])


def test_a_best_step_within_noise_of_the_last_is_flagged(tmp_path, tiny_model_dir, synth_dir, monkeypatch, caplog):
    """The card says by how much (paired over the validation users) the kept step beat the last one, and a margin
    under two standard errors is warned about. The validator's scores are scripted so that step 2 wins narrowly."""
    from llmrec.training import card
    from llmrec.training.checkpoints import TrainState
    from llmrec.training.validation import Validator

    scripted = iter([
        [0.0, 0.0, 0.0, 0.0],  # step 0 (zero-shot)
        [1.0, 1.0, 0.0, 1.0],  # step 2: the best, 0.75
        [1.0, 0.0, 1.0, 0.5],  # step 4: 0.625
    ])

    def evaluate(self, model):
        values = next(scripted)
        return {"ndcg@10": sum(values) / len(values)}, values

    monkeypatch.setattr(Validator, "evaluate", evaluate)
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir)
    with caplog.at_level("WARNING", logger=card.__name__):
        train(cfg, progress=False)
    close = read_card(tmp_path / "adapter")["validation"]["best_vs_last"]
    assert close["best_step"] == 2 and close["last_step"] == 4 and close["users"] == 4
    assert close["metric"] == "ndcg@10" and close["gain"] == pytest.approx(0.125)  # differences 0, 1, -1, 0.5
    assert close["se"] == pytest.approx(math.sqrt((0.125**2 + 0.875**2 + 1.125**2 + 0.375**2) / 3 / 4), abs=1e-6)
    assert "chosen over the last step (4) by ndcg@10 +0.1250" in caplog.text and "within noise" in caplog.text

    state = TrainState(fingerprint="x", per_user={"2": [1.0, 0.0]})
    assert TrainState.from_dict(state.to_dict()).per_user == {"2": [1.0, 0.0]}
    older = {k: v for k, v in state.to_dict().items() if k != "per_user"}  # a checkpoint written before it existed
    assert TrainState.from_dict(older).per_user == {}


def test_label_prior_loss_is_the_entropy_of_the_answers():
    from llmrec.training.examples import ExampleSpec, TrainExample, label_prior_loss

    spec = ExampleSpec(user_id="u", history=(), target="i", candidates=("i",))
    examples = [TrainExample("", (1,), answer, (5, 6, 7), spec) for answer in (5, 5, 6, 7)]
    assert label_prior_loss(examples) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert label_prior_loss(examples[:2]) == 0.0  # one answer throughout: nothing to learn beyond it


def test_a_loss_that_stays_at_the_label_prior_is_flagged(tmp_path, tiny_model_dir, synth_dir, caplog):
    """A run that learns nothing (learning rate ~0: the random tiny model's loss over the whole vocabulary is far
    above the prior's) is warned about, and the card records the prior's loss next to the late training loss."""
    from llmrec.training import card

    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"optim.learning_rate": 1e-12, "validation.users": 0})
    with caplog.at_level("WARNING", logger=card.__name__):
        result = train(cfg, progress=False)
    training = read_card(tmp_path / "adapter")["training"]
    assert training["losses"] == result.losses and len(result.losses) == 4  # the loss curve, step by step
    prior = training["label_prior"]
    late = result.losses[2:]  # the last half
    assert prior["steps"] == 2 and prior["late_loss"] == pytest.approx(sum(late) / 2, abs=1e-6)
    assert prior["late_se"] == pytest.approx(abs(late[0] - late[1]) / 2, abs=1e-6)  # sd/sqrt(2) of two values
    assert 0 < prior["loss"] <= math.log(6) + 1e-9  # target + 5 negatives: at most uniform over 6 letters
    assert "stayed at the label prior's" in caplog.text and "not learned from these prompts" in caplog.text


def test_the_label_prior_rule_allows_for_the_late_loss_noise():
    from llmrec.training.card import stayed_at_label_prior

    assert stayed_at_label_prior({"loss": 0.6365, "late_loss": 0.64, "late_se": 0.02})  # above it
    assert stayed_at_label_prior({"loss": 0.6365, "late_loss": 0.62, "late_se": 0.02})  # within one SE below
    assert not stayed_at_label_prior({"loss": 0.6365, "late_loss": 0.59, "late_se": 0.02})  # learned, if a little
    assert not stayed_at_label_prior({"loss": 2.98, "late_loss": 1.5, "late_se": 0.05})


def test_patience_stops_a_run_whose_validation_stopped_improving(tmp_path, tiny_model_dir, synth_dir, monkeypatch):
    """Scripted validation: the zero-shot start is best and the next two validations are below it, so with
    patience 2 the run stops at step 4 of 8, writes the best validated step and says where it stopped."""
    from llmrec.training.checkpoints import fingerprint
    from llmrec.training.steps import validations_without_gain
    from llmrec.training.validation import Validator

    scores = iter([0.5, 0.25, 0.3, 0.9, 0.9])  # steps 0, 2, 4 (stop); steps 6 and 8 must not be reached

    def evaluate(self, model):
        value = next(scores)
        return {"ndcg@10": value}, [value] * 4

    monkeypatch.setattr(Validator, "evaluate", evaluate)
    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"optim.max_steps": 8, "validation.patience": 2})
    result = train(cfg, progress=False)
    assert result.steps == 4 and [row["step"] for row in result.validation] == [0, 2, 4]
    card = read_card(tmp_path / "adapter")
    assert card["training"]["steps"] == 4
    assert card["training"]["stopped_early"] == {"planned_steps": 8, "patience": 2}
    assert card["validation"]["best_step"] == 4  # the best validated step after the start (0.3 > 0.25)
    assert fingerprint(cfg) == fingerprint(cfg.with_overrides({"validation.patience": None}))

    rows = [{"step": s, "m": v} for s, v in ((0, 0.5), (2, 0.6), (4, 0.6), (6, 0.55))]
    assert validations_without_gain(rows, "m") == 2  # a tie is no gain
    assert validations_without_gain(rows[:2], "m") == 0


def test_patience_needs_periodic_validation(tmp_path, tiny_model_dir, synth_dir):
    with pytest.raises(ConfigError, match=r"validation\.patience: needs periodic validation"):
        make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"validation.patience": 2, "validation.every": None})
    with pytest.raises(ConfigError, match=r"validation\.patience: must be >= 1 or null, got 0"):
        make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"validation.patience": 0})


def test_lora_on_the_last_layers_only_trains_and_reloads_there(tmp_path, tiny_model_dir, synth_dir, synth):
    from safetensors.torch import load_file

    cfg = make_cfg(tmp_path, tiny_model_dir, synth_dir, **{"lora.last_layers": 1, "optim.max_steps": 2})
    train(cfg, progress=False)
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    layers = {int(name.split(".layers.")[1].split(".")[0]) for name in weights}
    assert layers == {1}  # the tiny model has 2 decoder layers: only the last one carries LoRA matrices
    assert read_card(tmp_path / "adapter")["lora"]["last_layers"] == 1
    assert listwise_scores(tiny_model_dir, synth, tmp_path / "adapter") != listwise_scores(tiny_model_dir, synth)
    # a whole-model adapter does not continue as a last-layers one (another LoRA shape), and too many layers is named
    with pytest.raises(ConfigError, match=r"lora.init_from: .*layers \[1\] \(adapter\) vs None"):
        train(make_cfg(tmp_path, tiny_model_dir, synth_dir, output=str(tmp_path / "x"),
                       **{"lora.init_from": str(tmp_path / "adapter")}), progress=False)
    with pytest.raises(ConfigError, match="lora.last_layers: 3 asked, but the model has 2 decoder layers"):
        train(make_cfg(tmp_path, tiny_model_dir, synth_dir, output=str(tmp_path / "y"), checkpoint_dir=str(tmp_path / "c3"),
                       **{"lora.last_layers": 3}), progress=False)
    with pytest.raises(ConfigError, match="lora.last_layers"):
        TrainConfig.from_dict({"lora": {"last_layers": 0}})
