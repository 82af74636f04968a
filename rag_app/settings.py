"""Typed settings: one object, read from a TOML file and ``RAG_APP_*`` variables, passed explicitly.

Precedence, highest first: values passed to :meth:`Settings.load`, environment variables
(``RAG_APP_EMBEDDING__BATCH_SIZE=16``; nested keys joined by ``__``), the TOML file
(``--config``, ``$RAG_APP_CONFIG`` or ``./rag-app.toml``), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rag_app.errors import ConfigError
from rag_app.search_options import MAX_K, RetrievalMode

ENV_PREFIX = "RAG_APP_"
DEFAULT_GENERATOR = "Qwen2.5-Coder-0.5B-Instruct"
"""The packaged default generator (``rag_app.models.PACKAGED_GENERATORS`` lists the others)."""
CONFIG_FILE_NAME = "rag-app.toml"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rag-app`` (or ``~/.cache/rag-app``): converted models live here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag-app"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/rag-app`` (or ``~/.local/share/rag-app``): conversations and feedback live here."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rag-app"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingSettings(_Section):
    """How text becomes vectors."""

    model: str = "all-MiniLM-L6-v2"
    """A packaged model name, a local folder, or a hub id (hub ids need ``allow_network``)."""
    backend: Literal["onnx", "torch"] = "onnx"
    """``onnx``: exported once and run with onnxruntime (fast on CPU); ``torch``: sentence-transformers."""
    quantize: bool = True
    """With ``onnx``: dynamic int8 quantization (about 1.5x faster on CPU, cosine about 0.99 to fp32)."""
    batch_size: int = Field(32, ge=1, le=4096)
    """Chunks per forward pass; chunks are sorted by length first so padding stays small."""
    threads: int | None = Field(None, ge=1)
    """Intra-op threads for the embedder; unset means one per core."""
    max_tokens: int = Field(256, ge=16, le=8192)
    """Longest input the embedder sees, in its own tokens (special tokens included)."""


class ChunkingSettings(_Section):
    """How documents are cut into chunks."""

    chunk_tokens: int = Field(256, ge=16, le=8192)
    """Upper bound of a chunk in the embedder's tokens (special tokens included)."""
    overlap_tokens: int = Field(32, ge=0)
    """Tokens repeated between consecutive chunks of the same section run."""

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap_below_size(cls, value: int, info: Any) -> int:
        size = info.data.get("chunk_tokens", 256)
        if value >= size // 2:
            raise ValueError(f"must be less than half of chunking.chunk_tokens ({size}), got {value}")
        return value


class IndexSettings(_Section):
    """How the vector index is built."""

    index_type: str = "auto"
    """``auto`` picks flat below 50k vectors, HNSW below 1M, IVF-PQ (with ``refine``) above; or a kind
    of :data:`rag_app.store.vectors.VECTOR_INDEXES` (``flat``, ``hnsw``, ``ivf``, ``ivfpq``,
    ``opq-ivfpq``); recorded in the manifest with the parameters below."""
    nlist: int = Field(0, ge=0)
    """IVF kinds: inverted lists; 0 picks about 4 sqrt(vectors), a power of two (1M: 4,096)."""
    nprobe: int = Field(0, ge=0)
    """IVF kinds: lists searched per query (more: better recall, slower); 0 picks nlist/32, at
    least 16 for PQ. Applied to every search, so it can be changed without rebuilding."""
    pq_m: int = Field(0, ge=0)
    """PQ kinds: sub-quantizers, the bytes per vector with 8-bit codes; must divide the embedding
    dimension; 0 picks dimension/8 (384 dims: 48 bytes, 1/32 of float32)."""
    pq_nbits: int = Field(8, ge=1, le=16)
    """PQ kinds: bits per sub-quantizer code; training needs at least 2^pq_nbits vectors."""
    train_size: int = Field(0, ge=0)
    """PQ kinds: vectors the quantizers are trained on (the oldest chunks); 0 picks 40 x nlist, at
    least 65,536 (or every vector when there are fewer)."""
    refine: int = Field(8, ge=0)
    """PQ kinds: re-score the best ``refine`` x k PQ candidates exactly against the float vectors
    kept in the docstore, so scores are true cosines; 0 returns PQ scores (less recall). At 1M
    vectors 4 gave recall@10 0.85, 8 gave 0.92 at p50 4.8 ms, 16 0.96 at 6.1 ms (bench/README)."""
    retrain_factor: float = Field(4.0, ge=0)
    """PQ kinds: new vectors are encoded with the existing quantizers until the index holds this
    many times the vectors it was built for; the next write then retrains it (0: never)."""
    use_gpu: Literal["auto", "never", "always"] = "auto"
    """Build/search on GPU when faiss was installed with GPU support (the ``gpu`` extra)."""
    max_file_mb: float = Field(100.0, gt=0)
    """Files larger than this are skipped with a message."""
    max_unpacked_mb: float = Field(512.0, gt=0)
    """Zip-based documents (DOCX, PPTX, XLSX, ODT, EPUB) whose members add up to more than this,
    uncompressed, are refused before any member is read (a zip bomb guard)."""
    max_zip_ratio: float = Field(100.0, gt=1)
    """Zip-based documents that unpack to more than this many times their size (past 16 MB
    unpacked) are refused before any member is read."""
    max_text_mb: float = Field(100.0, gt=0)
    """A document whose extracted text is larger than this (UTF-8) is refused instead of chunked."""
    lock_wait_s: float = Field(0.0, ge=0)
    """Seconds an ingest or delete waits for another writer of the same index to finish before
    failing (``rag-app ingest --wait``); 0 fails at once."""
    redact_pii: bool = False
    """Replace e-mails, phone numbers, IBANs, card numbers, IP addresses and person names with typed
    placeholders (``<EMAIL_1>``) before chunks are stored or embedded (``rag-app ingest --redact-pii``;
    needs the ``pii`` extra; see :mod:`indexes.redaction` for what it finds and misses)."""
    backend: Literal["faiss", "milvus"] = "faiss"
    """Where the vectors are served from: FAISS files in the index folder, or a Milvus collection
    (the ``milvus`` extra; see :mod:`rag_app.store.milvus`). The SQLite docstore stays the source of
    truth either way; changing this moves the vectors at the next ingest."""
    milvus_uri: str = ""
    """With ``backend = "milvus"``: a server such as ``http://host:19530`` (the token comes from
    ``$RAG_APP_MILVUS_TOKEN``, never from here), or a milvus-lite path ending in ``.db``; unset: the
    index's recorded one, else milvus-lite at ``<index>/vectors.milvus.db``."""
    milvus_collection: str = ""
    """With ``backend = "milvus"``: the collection; unset: the index's recorded one, else a name
    derived from the index folder (one collection per index folder)."""
    milvus_timeout_s: float = Field(10.0, gt=0)
    """With ``backend = "milvus"``: seconds to wait for Milvus to answer before failing."""

    @field_validator("index_type")
    @classmethod
    def _known_index_type(cls, value: str) -> str:
        from rag_app.store.vectors import VECTOR_INDEXES  # the one list of index kinds

        if value != "auto" and value not in VECTOR_INDEXES:
            raise ValueError(f"must be auto or one of {', '.join(VECTOR_INDEXES)}, got {value!r}")
        return value

    def vector_params(self) -> dict[str, Any]:
        """The vector-index parameters set here, for :func:`rag_app.store.vectors.choose_spec`
        (those left at 0, "pick for the index size", are omitted)."""
        sized = {"nlist": self.nlist, "nprobe": self.nprobe, "pq_m": self.pq_m, "train_size": self.train_size}
        fixed = {"pq_nbits": self.pq_nbits, "refine": self.refine, "retrain_factor": self.retrain_factor}
        return {key: value for key, value in sized.items() if value} | fixed


class RetrievalSettings(_Section):
    """How passages are found for a question."""

    k: int = Field(5, ge=1, le=MAX_K)
    """Passages returned."""
    mode: RetrievalMode = "hybrid"
    fusion: Literal["rrf", "weighted"] = "weighted"
    """``rrf``: reciprocal rank fusion; ``weighted``: convex combination of normalised scores."""
    dense_weight: float = Field(0.5, ge=0.0, le=1.0)
    """With ``weighted`` fusion: weight of the dense score (BM25 gets the rest)."""
    rrf_k: int = Field(60, ge=1)
    candidates: int = Field(100, ge=1)
    """Hits taken from each retriever before fusion."""
    mmr: bool = False
    """Re-rank the fused list with maximal marginal relevance for diversity."""
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0)


class GeneratorSettings(_Section):
    """The language model that writes answers."""

    model: str = DEFAULT_GENERATOR
    """A packaged model (``Qwen2.5-Coder-0.5B-Instruct``, the opt-in ``Qwen2.5-Coder-1.5B-Instruct``,
    the tiny ``SmolLM2-135M-Instruct``), a local folder, a GGUF file, or a hub id; with ``openai``,
    the served name."""
    backend: Literal["transformers", "openai", "llamacpp"] = "transformers"
    adapter: str | None = "auto"
    """``auto`` (default): the adapter promoted in this data dir's registry (``rag-app adapters
    promote``, or the retraining loop) when it was trained on ``generator.model``, else the adapter
    the loop promoted for the packaged model if one ships, else the bare model. ``none`` (or unset):
    the bare model. ``packaged``: rag-app's reader adapter for the packaged 0.5B (opt-in); a LoRA
    adapter folder; the name of an adapter in the registry (SFT, DPO, RLHF); ``promoted``: the
    registry's promoted one, or an error. With ``openai``, the adapter's served model name (vLLM
    ``--lora-modules name=path``); ``auto`` asks for the promoted adapter when this data dir has one."""
    base_url: str | None = None
    """With ``openai``: the server's URL, e.g. ``http://127.0.0.1:8000/v1``."""
    api_key: str | None = None
    """With ``openai``: the key sent as a bearer token (``RAG_APP_GENERATOR__API_KEY``)."""
    timeout_s: float = Field(60.0, gt=0)
    """With ``openai``: seconds to wait for the server before giving up with a clear error."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """``auto`` picks bfloat16 on CPUs that run it fast and float32 elsewhere."""
    threads: int | None = Field(None, ge=1)
    """Torch threads for the ``transformers`` backend; unset means one per core."""
    max_new_tokens: int = Field(96, ge=1, le=32768)
    """Longest answer in tokens. Answers are short (a phrase, or a sentence for how and why);
    a list or an explanation fits in 96 tokens, and a model that rambles is cut sooner."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """0 is greedy decoding: the same question gives the same answer."""
    repetition_penalty: float = Field(1.15, ge=1.0, le=2.0)
    """Penalises tokens already generated; small models loop without it."""
    no_repeat_ngram_size: int = Field(6, ge=0)
    """Forbids repeating any n-gram of this size (0 disables)."""
    context_tokens: int = Field(700, ge=64)
    """Budget for the numbered sources in the prompt, in the generator's tokens (the best are
    kept). 700 holds about three passages of 256 embedder tokens: on two CPU cores the 0.5B model
    reads them in about 2 s, and the fourth and fifth passages rarely hold an answer the first
    three lack."""


class GuardSettings(_Section):
    """The hallucination guard and when to abstain."""

    enabled: bool = True
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """A sentence whose lexical support score is below this is flagged."""
    short_threshold: float | None = Field(None, ge=0.0, le=1.0)
    """The same for short answers (a few words); unset: the packaged guard's calibrated value."""
    model_path: Path | None = None
    """A guard model trained with ``rag-app guard train``; unset uses the packaged one."""
    verifier: bool = True
    """Ask the generator, after its answer, whether the answer is right (P(Yes) from one forward
    pass over the KV cache it already has); off, or for a generator the verdict was not fitted on:
    the verdict's lexical model decides (guard support, copied span, question words around it)."""
    verdict_path: Path | None = None
    """The model that combines guard, verifier and confidence; unset: the adapter's own
    (``verdict-model.json`` in its folder, fitted by the retraining loop), else the packaged one."""
    min_grounding: float | None = Field(None, ge=0.0, le=1.0)
    """Withhold an answer whose grounding score is below this; unset: the verdict model's
    threshold, calibrated on SQuAD dev articles 1-16."""
    on_unsupported: Literal["withhold", "mark", "pass"] = "withhold"
    """What a client gets when the answer is not supported: ``withhold`` shows the abstention
    sentence (the draft stays in ``Answer.draft`` and the JSON), ``mark`` shows the answer with a
    warning and ``Answer.supported`` false, ``pass`` shows it as it is (for evaluation)."""
    min_retrieval_score: float = Field(0.25, ge=0.0, le=1.0)
    """Abstain without generating when the best passage's dense similarity is below this."""


class ServerSettings(_Section):
    """The REST API (``rag-app serve``)."""

    host: str = "127.0.0.1"
    """Interface to listen on; ``0.0.0.0`` exposes it to the network (use API keys and TLS in front)."""
    port: int = Field(8080, ge=1, le=65535)
    indexes_dir: Path | None = None
    """Folder whose subfolders are the served indexes (named by folder); unset: ``data_dir/indexes``."""
    default_index: str | None = None
    """The index used when a request names none (and for the OpenAI ``model`` ``rag-app``)."""
    api_keys_file: Path | None = None
    """Hashed API keys (``rag-app serve keys add``); unset: ``data_dir/api-keys.json``."""
    require_api_key: bool = True
    """Off: every request is treated as admin, for local use only (a warning is logged)."""
    ingest_roots: list[Path] = Field(default_factory=list)
    """Server folders that ``POST /ingest`` may read by path; empty: ingest by path is refused."""
    uploads_dir: Path | None = None
    """Where uploaded files are kept (they are the documents' sources); unset: ``data_dir/uploads``."""
    cors_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the API (``["*"]`` for any); empty: no CORS headers."""
    rate_limit_per_minute: int = Field(120, ge=0)
    """Requests per minute per API key (a key may set its own); 0 disables the limit."""
    failed_auth_per_minute: int = Field(20, ge=0)
    """Failed authentications (no key, a wrong key) an address may make in a minute; past that it
    gets 429 until the minute ends, whatever key it sends. Behind a reverse proxy the address is
    taken from ``X-Forwarded-For`` only when the proxy is in uvicorn's ``FORWARDED_ALLOW_IPS``
    (127.0.0.1 by default); else all clients share the proxy's. 0 disables the limit."""
    max_body_kb: int = Field(256, ge=1)
    """Largest JSON request body."""
    max_upload_mb: float = Field(50.0, gt=0)
    """Largest multipart upload to ``POST /ingest`` (all files together)."""
    ingest_wait_s: float = Field(300.0, ge=0)
    """Seconds ``POST /ingest`` (and ``DELETE /documents``) waits, in a worker thread, for another
    writer of the index (a CLI ingest, another request) to finish; then 409 ``index_locked``."""
    public_metrics: bool = True
    """Serve ``GET /metrics`` without a key (for Prometheus scrapers on a private network)."""
    json_logs: bool = True
    """One JSON object per log line, with the request id; off: plain text."""


class EvalSettings(_Section):
    """Evaluation runs (``rag-app eval``) and the RAGAS judge."""

    runs_db: Path | None = None
    """SQLite file of stored runs; unset: ``DATA_DIR/eval-runs.sqlite``."""
    seed: int = 0
    """Seed of sampling, replicates, probes and bootstrap resampling."""
    replicates: int = Field(1, ge=1, le=50)
    """Times each question is answered (sampling with ``replicate_temperature`` after the first)."""
    replicate_temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Temperature of replicates 2.. (the first is always greedy); 0 makes them identical."""
    bootstrap_samples: int = Field(1000, ge=100, le=100000)
    """Resamples behind each confidence interval and each run-to-run comparison."""
    judge_base_url: str | None = None
    """An OpenAI-compatible endpoint (``http://host:8000/v1``, e.g. vLLM serving a 7B+ model) for
    RAGAS's LLM metrics; unset: only the offline metrics run (faithfulness from the guard)."""
    judge_model: str = ""
    """The model name the judge endpoint serves."""
    judge_api_key: str | None = None
    """Bearer token for the judge (``RAG_APP_EVAL__JUDGE_API_KEY``)."""
    judge_local: bool = True
    """With no ``judge_base_url``: judge in this process with the generator's base model (the
    packaged 0.5B by default, without the reader adapter, whose answers are too short for RAGAS's
    JSON). How many of its verdicts fail to parse is reported with the run. Off: without a judge
    endpoint only the offline metrics run."""
    judge_questions: int | None = Field(10, ge=1)
    """RAGAS's LLM metrics judge at most this many answers of a run (each takes about ten judge
    calls); unset: every answer."""
    judge_max_new_tokens: int = Field(512, ge=16, le=8192)
    """Longest judge reply with ``judge_local`` (RAGAS's statement lists run long)."""
    judge_timeout_s: float = Field(120.0, gt=0)
    judge_max_workers: int = Field(4, ge=1, le=64)
    """Concurrent judge calls."""


class UISettings(_Section):
    """The Streamlit app (``rag-app ui``)."""

    index: Path = Path("indexes/default")
    """The index folder the app opens first (another can be chosen in its sidebar); unset:
    ``DATA_DIR/indexes/default``, never a folder of the working directory."""
    upload_dir: Path | None = None
    """Where uploaded files are saved before ingest; unset means ``DATA_DIR/uploads``."""
    reports_dir: Path = Path("eval-reports")
    """The folder of evaluation reports that the app's Evaluation page lists (and ``rag-app eval``
    writes to); unset: ``DATA_DIR/eval-reports``."""

    def resolve_defaults(self, data_dir: Path) -> None:
        """Put the paths that were not set under ``data_dir``; they stay unset, so they follow it."""
        for name in ("index", "reports_dir"):
            if name not in self.model_fields_set:
                default = type(self).model_fields[name].default
                object.__setattr__(self, name, data_dir / default)  # not marked as set by the user


class Settings(BaseSettings):
    """Every setting of rag-app. Build it with :meth:`load`; pass it explicitly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    cache_dir: Path = Field(default_factory=default_cache_dir)
    """Where converted models (ONNX, safetensors) are cached."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """Where chat conversations and answer feedback are stored (SQLite)."""
    allow_network: bool = False
    """Allow hub downloads for models named by hub id. Off: everything resolves locally."""
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    ui: UISettings = Field(default_factory=UISettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _paths_under_data_dir(self) -> Settings:
        self.ui.resolve_defaults(self.data_dir)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``load`` merges file, environment and overrides itself (to know each value's origin)
        # and passes the result as init values.
        return (init_settings,)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Read settings from the TOML file, the environment and ``overrides``.

        Raises :class:`ConfigError` naming the key when a value is not allowed.
        """
        path = find_config_file(config_file)
        layers = _Layers(read_toml(path) if path else {}, _env_values(), overrides)
        try:
            settings = cls(**_deep_merge(_deep_merge(layers.toml, layers.env), overrides))
        except ValidationError as exc:
            raise ConfigError(_describe_validation_error(exc, path)) from None
        settings._origins = layers.origins(path)
        return settings

    def origins(self) -> dict[str, str]:
        """Where each value came from: ``default``, ``env RAG_APP_…``, ``file PATH`` or ``argument``."""
        return {key: self._origins.get(key, "default") for key in flatten(self.model_dump())}

    def explain(self) -> list[tuple[str, Any, str]]:
        """Rows of (dotted key, effective value, origin) for ``rag-app config show``."""
        origins = self.origins()
        return [(key, value, origins[key]) for key, value in flatten(self.model_dump()).items()]


class _Layers:
    def __init__(self, toml: dict[str, Any], env: dict[str, Any], overrides: dict[str, Any]) -> None:
        self.toml, self.env, self.overrides = toml, env, overrides

    def origins(self, path: Path | None) -> dict[str, str]:
        result = {key: f"file {path}" for key in flatten(self.toml)}
        result.update({key: f"env {ENV_PREFIX}{key.replace('.', '__').upper()}" for key in flatten(self.env)})
        result.update({key: "argument" for key in flatten(self.overrides)})
        return result


def find_config_file(config_file: str | Path | None) -> Path | None:
    """The TOML file to read: the argument, ``$RAG_APP_CONFIG``, or ``./rag-app.toml`` if present."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file named by {ENV_PREFIX}CONFIG not found: {path}")
        return path
    local = Path(CONFIG_FILE_NAME)
    return local if local.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file, with a clear error on bad syntax."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _env_values() -> dict[str, Any]:
    source = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__")
    return {k: v for k, v in source().items() if k != "config"}


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe_validation_error(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        got = error.get("input")
        problems.append(f"{key}: {error['msg']} (got {got!r})")
    where = f" in {path} or {ENV_PREFIX}* variables" if path else f" (check {ENV_PREFIX}* variables)"
    return "invalid settings" + where + ": " + "; ".join(problems)
