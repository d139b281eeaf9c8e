"""The adapter folders a run writes: PEFT LoRA weights (also the checkpoints' form) and the finished adapter folder
with its card, written atomically through the `llmrec.models.adapters` format."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from llmrec.errors import LlmrecError
from llmrec.io import atomic_write_dir
from llmrec.models.adapters import (
    CONFIG_FILE,
    PEFT_CONFIG_FILE,
    README_FILE,
    WEIGHTS_FILE,
    AdapterCard,
    read_base_model_info,
    write_card,
)
from llmrec.training.config import TrainConfig

log = logging.getLogger(__name__)


class OutputExistsError(LlmrecError, FileExistsError):
    """The adapter output folder exists and overwriting was not asked for."""


def check_output(cfg: TrainConfig) -> Path:
    """``cfg.output`` as a path, refused (before any work) when it exists and ``cfg.overwrite`` is False.

    Raises:
        OutputExistsError: it exists and overwriting was not asked for, or it is not a folder.
    """
    out = Path(cfg.output)
    if out.exists() and not cfg.overwrite:
        raise OutputExistsError(f"output {out} already exists; pass --overwrite (overwrite: true) to replace it")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder")
    return out


def save_adapter(model: Any, folder: Path, base_name: str) -> None:
    """Save the PEFT `model`'s LoRA weights and config into `folder`, naming `base_name` as its base model."""
    model.save_pretrained(str(folder), safe_serialization=True)
    cfg_path = folder / PEFT_CONFIG_FILE
    data = json.loads(cfg_path.read_text())
    data["base_model_name_or_path"] = base_name  # the asset name / path the user gave, not this machine's cache
    cfg_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (folder / README_FILE).unlink()  # PEFT's placeholder card; ours is written with the final adapter


def load_adapter_weights(model: Any, folder: Path) -> None:
    """Load the LoRA weights saved in `folder` (`save_adapter`) into the PEFT `model`."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(folder / WEIGHTS_FILE))
    set_peft_model_state_dict(model, state)


def write_output(out: Path, cfg: TrainConfig, model: Any, card: dict[str, Any]) -> dict[str, Any]:
    """Write the adapter folder atomically; return the card as written (with the base-model fingerprint).

    Raises:
        OutputExistsError: `out` appeared meanwhile and ``cfg.overwrite`` is False.
        LlmrecError: the folder could not be written (e.g. disk full); nothing is left at `out`.
    """
    from llmrec.models import write_base_model_info

    base = cfg.model.name_or_path
    try:
        with atomic_write_dir(out, overwrite=cfg.overwrite) as tmp:
            save_adapter(model, tmp, base)
            write_base_model_info(model, tmp, name=base)
            info = read_base_model_info(tmp) or {}
            written = AdapterCard.from_dict({**card, "base_model_fingerprint": info.get("fingerprint")})
            (tmp / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            write_card(tmp, written)
            tmp.chmod(0o755)  # mkdtemp makes it private; an adapter folder is meant to be shared
            for path in tmp.iterdir():
                path.chmod(0o644)
    except FileExistsError as exc:
        raise OutputExistsError(str(exc)) from None
    except OSError as exc:
        raise LlmrecError(f"could not write adapter to {out}: {exc.strerror or exc} (nothing was left there)") from exc
    log.info("adapter written to %s", out)
    return written.to_dict()


__all__ = ["OutputExistsError", "check_output", "load_adapter_weights", "save_adapter", "write_output"]
