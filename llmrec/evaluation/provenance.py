"""What made a report: the llmrec commit (and whether its tree had uncommitted changes), the dataset's content
fingerprint and the library versions. Reports record it, so evidence is pinned to a commit instead of a hash of
source bytes, and `llmrec eval --verify` can say what differs when a replay does not match.

Example:
    >>> from llmrec.evaluation.provenance import library_versions
    >>> "numpy" in library_versions()
    True
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError

#: Distributions whose versions can move a result (recorded in every report).
LIBRARIES = (
    "llmrec",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "sentence-transformers",
    "faiss-cpu",
    "implicit",
    "numpy",
    "scipy",
)

#: Paths of the source tree whose uncommitted changes make a report's commit a lie.
SOURCE_PATHS = ("llmrec", "pyproject.toml", "eval")


class DirtyTreeError(ConfigError):
    """A report would go into the repository from a working tree with uncommitted changes."""


def source_tree() -> Path | None:
    """The git checkout llmrec is imported from, or None (an installed wheel, no git)."""
    import llmrec

    package = Path(llmrec.__file__).resolve().parent
    try:
        out = _git(package.parent, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.CalledProcessError):
        return None
    root = Path(out)
    return root if (root / "llmrec").resolve() == package else None


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def git_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "changed": [paths with uncommitted changes under SOURCE_PATHS]}``; report
    folders' own files (``eval/results/``) do not count."""
    root = root if root is not None else source_tree()
    if root is None:
        return {"commit": None, "changed": []}
    commit = _git(root, "rev-parse", "HEAD")
    # -z: NUL-separated "XY path" entries, paths as they are (a rename adds its old path as the next entry)
    status = subprocess.run(
        ["git", "status", "--porcelain", "-z", "--untracked-files=all", "--", *SOURCE_PATHS],
        cwd=root, capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    entries = status.split("\0")
    paths, n = [], 0
    while n < len(entries):
        entry = entries[n]
        n += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":  # the rename's source path follows
            n += 1
    changed = sorted(p for p in paths if not p.startswith("eval/results/") and "__pycache__" not in p)
    return {"commit": commit, "changed": changed}


def library_versions() -> dict[str, str]:
    """Python's and each of `LIBRARIES`' installed version ("not installed" when absent)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def compute_setting() -> dict[str, Any]:
    """The threads torch and BLAS compute with and the CPU kernels torch picked: a trained model (SASRec) refit
    with another thread count or on other kernels sums in another order and ends elsewhere, so a replay sets the
    same threads and says when the kernels differ."""
    import torch
    from threadpoolctl import threadpool_info

    blas = [p.get("num_threads", 0) for p in threadpool_info() if p.get("user_api") == "blas"]
    from llmrec.models.machine import cpu_description

    return {
        "torch_threads": torch.get_num_threads(),
        "blas_threads": max(blas, default=0),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "machine": platform.machine(),
        "cpu": cpu_description(),
    }


def provenance(dataset_fingerprint: str, versions: Mapping[str, Any]) -> dict[str, Any]:
    """What a report records about what made it: commit, uncommitted changes, dataset content, library and
    component versions (`versions`: the explicit behaviour versions the caches key on), threads and CPU kernels."""
    state = git_state()
    return {
        "commit": state["commit"],
        "uncommitted_changes": state["changed"],
        "dataset_fingerprint": dataset_fingerprint,
        "libraries": library_versions(),
        "versions": dict(versions),
        "compute": compute_setting(),
    }


def check_pinnable(out: str | Path, record: Mapping[str, Any], *, allow_dirty: bool) -> None:
    """Refuse to write a report into the source tree from uncommitted changes (its commit would not be what made
    it), unless `allow_dirty`. Reports written elsewhere only record the changes.

    Raises:
        DirtyTreeError: naming up to five changed files, and the two ways out.
    """
    changed = record.get("uncommitted_changes") or []
    root = source_tree()
    if not changed or allow_dirty or root is None:
        return
    try:
        Path(out).resolve().relative_to(root)
    except ValueError:
        return
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    raise DirtyTreeError(
        f"the report would go into {out} from a working tree with uncommitted changes ({shown}), so the commit it "
        f"records ({str(record.get('commit'))[:12]}) did not make it: commit first, or pass --allow-dirty (the "
        "report then lists the changes)"
    )
