"""First stages fitted for the bundled datasets, shipped so that a first run need not fit them (see README.md).

`seed_cache` copies each shipped fit into the retriever cache when the cache lacks it. The caches read a fit only
when its key matches (SASRec's and zfusion's keys cover the training data, the settings and the versions), so a
shipped fit made for other data or by another version of the code is never used.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

#: The shipped fits: files named as the retriever caches name them.
FITTED_DIR = Path(__file__).resolve().parent
_PATTERNS = ("sasrec-*.pt", "zfusion-*.json")


def shipped_fits() -> list[Path]:
    """The shipped fitted files, by name."""
    return sorted(p for pattern in _PATTERNS for p in FITTED_DIR.glob(pattern))


def seed_cache(cache_dir: Path) -> list[Path]:
    """Copy the shipped fits that `cache_dir` lacks into it (each written whole: a temporary file renamed into
    place); returns the files copied. A read-only or unwritable cache is left as it is."""
    copied = []
    for source in shipped_fits():
        target = Path(cache_dir) / source.name
        if target.exists():
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(source, partial)
            partial.replace(target)
        except OSError as exc:
            log.warning("cannot copy the shipped fit %s into %s (%s); it is fitted instead", source.name, cache_dir, exc)
            continue
        copied.append(target)
    if copied:
        log.info("copied %d shipped first-stage fit(s) into %s", len(copied), cache_dir)
    return copied
