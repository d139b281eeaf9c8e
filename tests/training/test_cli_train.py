"""`llmrec train`: config file + flag overrides end to end; bad input is one line and exit status 2."""

from __future__ import annotations

import yaml

from llmrec.cli import main


def write_config(tmp_path, model_dir, dataset_dir):
    cfg = {
        "output": str(tmp_path / "from-config"),
        "model": {"name_or_path": str(model_dir)},
        "data": {"dataset": str(dataset_dir), "min_history": 3, "positions_per_user": 1},
        "negatives": {"n": 4},
        "prompt": {"template": "listwise"},
        "lora": {"r": 2},
        "optim": {"batch_size": 2, "epochs": 1},
        "validation": {"users": 2, "negatives": 4, "every": None},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_trains_with_overrides(tmp_path, tiny_model_dir, synth_dir, capsys):
    path = write_config(tmp_path, tiny_model_dir, synth_dir)
    out = tmp_path / "from-flags"
    rc = main(["train", "--config", str(path), "--output", str(out), "--max-steps", "2", "--set", "lora.alpha=4",
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"adapter: {out}" in printed and "steps: 2" in printed and "zero-shot" in printed
    card = yaml.safe_load((out / "train_config.yaml").read_text())
    assert card["lora"] == {"r": 2, "alpha": 4, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "init_from": None, "last_layers": None}
    assert card["optim"]["max_steps"] == 2
    assert not (tmp_path / "from-config").exists()

    rc = main(["train", "--config", str(path), "--output", str(out), "--max-steps", "1"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]


def test_cli_bad_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("lora:\n  r: eight\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lora.r" in err[0] and "Traceback" not in err[0]
    assert main(["train", "--set", "optim.lr=0.1"]) == 2
    assert "unknown config key 'optim.lr'" in capsys.readouterr().err
    assert main(["train", "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_print_config_resolves_flags(capsys):
    argv = ["train", "--print-config", "--lora-r", "32", "--template", "pointwise", "--mode", "pointwise"]
    assert main([*argv, "--mixed-precision", "bf16"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["lora"]["r"] == 32 and cfg["mode"] == "pointwise" and cfg["prompt"]["template"] == "pointwise"
    assert cfg["model"]["mixed_precision"] == "bf16"


def test_estimate_times_a_few_steps_and_writes_nothing(tmp_path, tiny_model_dir, synth_dir, capsys):
    import json

    path = write_config(tmp_path, tiny_model_dir, synth_dir)
    rc = main(["train", "--config", str(path), "--estimate", "3", "--set", "validation.every=2",
               "--checkpoint-dir", str(tmp_path / "ckpt"), "--no-progress"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    estimate = json.loads(lines[-1])
    assert "steps x" in lines[0] and "minutes on this machine" in lines[0] and "median of 2 timed steps" in lines[0]
    assert estimate["timed_steps"] == 2 and estimate["seconds_per_step"] > 0 and estimate["seconds_per_validation"] > 0
    steps = estimate["steps"]
    assert steps >= 3
    # the zero-shot start, one per 2 steps, and the end when the last step is odd
    assert estimate["validations"] == 1 + steps // 2 + steps % 2
    total = steps * estimate["seconds_per_step"] + estimate["validations"] * estimate["seconds_per_validation"]
    assert estimate["total_seconds"] == round(total, 1)
    assert not (tmp_path / "from-config").exists()  # no adapter, and no checkpoint folder either
    assert not (tmp_path / "ckpt").exists()

    assert main(["train", "--config", str(path), "--estimate", "1"]) == 2
    assert "at least 2 steps" in capsys.readouterr().err
