"""The default embedder: the model exported once to ONNX and run with onnxruntime.

The exported graph takes ``input_ids`` and ``attention_mask`` and returns ``sentence_embedding``
(batch, dim): mean (or CLS) pooling and L2 normalisation happen inside the graph. With
``embedding.quantize`` the MatMul weights are quantized to int8 (dynamic, per channel), which
on CPU is about twice as fast as fp32 at a mean cosine of about 0.994 to the torch model.
Activations are quantized with one scale per batch, so an int8 vector moves very slightly
(cosine > 0.99) with its batch neighbours; fp32 vectors do not depend on the batch.

``model_id`` carries the numerics (``all-MiniLM-L6-v2@onnx-int8``); ``model_name`` does not.
Indexes check compatibility by ``model_name`` and dimension: int8, fp32 and torch vectors of
the same model live in the same embedding space (cosine about 0.99), so switching backends
does not force a re-index, while switching models does.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_app.errors import RagAppError
from rag_app.models import EmbedderInfo, embedder_info, weights_digest
from rag_app.offline import enforce_offline
from rag_app.settings import Settings

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

log = logging.getLogger(__name__)

OPSET = 17
QUANTIZE_OPTIONS: dict[str, Any] = {
    "per_channel": True,
    "reduce_range": False,
    "op_types_to_quantize": ["MatMul"],
}
"""Measured on 200 scifact chunks of 256 tokens: per-tensor int8 fell to cosine 0.93 to torch;
per-channel kept 0.994 at the same speed; leaving the embedding Gather in fp32 helps a little."""
TOKEN_BUDGET = 1024
"""Padded tokens per forward pass. Measured on 2 cores (int8): 256-token chunks run fastest 2-4 to a
batch (~89/s; 8 a batch ~82/s, 16 ~69/s); 22-token queries fastest 32 to a batch (~1150/s)."""
MIN_COSINE_FP32 = 0.999
MIN_COSINE_INT8 = 0.98

_CHECK_SENTENCES = [
    "A line scan diffusion-weighted MRI sequence was applied to measure the apparent diffusion coefficient.",
    "Vitamin D deficiency is associated with a higher risk of cardiovascular disease in older adults.",
    "The quick brown fox jumps over the lazy dog.",
    "Offline retrieval keeps every document on this machine.",
    "What causes the seasons?",
    "Mutations in the BRCA1 gene increase the lifetime risk of breast and ovarian cancer, "
    "and carriers are offered earlier and more frequent screening as well as preventive surgery.",
]


def onnx_path(model_name: str, folder: Path, cache_dir: Path, quantize: bool) -> Path:
    """Where the exported model of ``folder`` is cached: keyed by name and a digest of the weights."""
    safe = re.sub(r"[^\w.-]+", "--", model_name)
    file_name = "model.int8.onnx" if quantize else "model.onnx"
    return cache_dir / "onnx" / f"{safe}-{weights_digest(folder)}" / file_name


def export_onnx(info: EmbedderInfo, cache_dir: Path, quantize: bool) -> Path:
    """Export (and optionally quantize) the model once; later calls return the cached file.

    Files are written to a temporary name and renamed into place under a file lock, and each is
    checked against torch (fp32) or the fp32 graph (int8) before it is kept.
    """
    from filelock import FileLock

    target = onnx_path(info.name, info.folder, cache_dir, quantize)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / "export.lock")):
        if target.is_file():
            return target
        fp32 = target.with_name("model.onnx")
        if not fp32.is_file():
            _atomic_write(fp32, lambda tmp: _export_fp32(info, tmp))
        if quantize:
            _atomic_write(target, lambda tmp: _quantize(fp32, tmp, info))
    return target


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _pooled_model(info: EmbedderInfo) -> Any:
    """The HF model wrapped with pooling and normalisation, as one torch module."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module, pooling: str) -> None:
            super().__init__()
            self.model, self.pooling = model, pooling

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    # eager attention exports to a graph that onnxruntime runs ~1.5x faster than the SDPA one
    model = AutoModel.from_pretrained(info.folder, attn_implementation="eager", dtype=torch.float32)
    return Pooled(model.eval(), info.pooling).eval()


def _check_batch(info: EmbedderInfo) -> dict[str, np.ndarray]:
    tokenizer = load_tokenizer(info.folder)
    tokenizer.enable_truncation(min(info.max_seq_length, 512))
    return _pad(tokenizer.encode_batch(_CHECK_SENTENCES))


def _export_fp32(info: EmbedderInfo, out: Path) -> None:
    import torch

    wrapper = _pooled_model(info)
    feeds = _check_batch(info)  # padded on purpose: the trace must see a mask with zeros
    example = (torch.from_numpy(feeds["input_ids"][:2]), torch.from_numpy(feeds["attention_mask"][:2]))
    inputs, outputs = ["input_ids", "attention_mask"], ["sentence_embedding"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the legacy (TorchScript) exporter: faster, and enough for a BERT-like encoder
            axes = {name: {0: "batch", 1: "sequence"} for name in inputs} | {outputs[0]: {0: "batch"}}
            torch.onnx.export(
                wrapper,
                example,
                str(out),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        except (TypeError, RuntimeError, NotImplementedError, ImportError) as exc:
            log.info("legacy ONNX exporter unavailable (%s); using the dynamo exporter", exc)
            dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
            torch.onnx.export(
                wrapper,
                example,
                str(out),
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes={name: dims for name in inputs},
                opset_version=max(OPSET, 18),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        reference = wrapper(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
    _verify(out, feeds, reference.numpy(), MIN_COSINE_FP32, "torch")


def _quantize(fp32: Path, out: Path, info: EmbedderInfo) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _DropPreprocessHint()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, **QUANTIZE_OPTIONS)
    finally:
        logging.getLogger().removeFilter(quiet)
    feeds = _check_batch(info)
    reference = _session(fp32, threads=cpu_count()).run(["sentence_embedding"], feeds)[0]
    _verify(out, feeds, reference, MIN_COSINE_INT8, "the fp32 graph")


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _verify(
    path: Path, feeds: dict[str, np.ndarray], reference: np.ndarray, minimum: float, what: str
) -> None:
    got = _session(path, threads=cpu_count()).run(["sentence_embedding"], feeds)[0]
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = (got * reference).sum(axis=1) / norms
    if float(cosine.mean()) < minimum or got.shape != reference.shape:
        raise RagAppError(
            f"ONNX export of {path.name} does not match {what}: mean cosine {cosine.mean():.4f} "
            f"(need {minimum}); delete {path.parent} and retry, or set embedding.backend = 'torch'"
        )


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(path), options, providers=providers)


def load_tokenizer(folder: Path) -> tokenizers.Tokenizer:
    """``folder/tokenizer.json`` with truncation and padding switched off."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise RagAppError(f"{folder} has no tokenizer.json (a fast tokenizer is needed to embed)")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _pad(encodings: Sequence[Any]) -> dict[str, np.ndarray]:
    """Right-pad a batch to its longest member."""
    longest = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), longest), dtype=np.int64)
    mask = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def length_batches(lengths: Sequence[int], max_count: int, token_budget: int) -> Iterator[list[int]]:
    """Indices grouped longest first: at most ``max_count`` a batch and padded size within the budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for index in order:
        longest = lengths[batch[0]] if batch else lengths[index]
        if batch and (len(batch) >= max_count or longest * (len(batch) + 1) > token_budget):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def cpu_count() -> int:
    """Cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class OnnxEmbedder:
    """:class:`~rag_app.embeddings.base.Embedder` on onnxruntime; export happens on first use."""

    def __init__(self, settings: Settings, *, token_budget: int = TOKEN_BUDGET) -> None:
        self.settings = settings
        self.info = embedder_info(settings)
        self.quantize = settings.embedding.quantize
        self.model_name = self.info.name
        self.model_id = f"{self.info.name}@onnx-{'int8' if self.quantize else 'fp32'}"
        self.dimension = self.info.dimension
        self.max_tokens = min(settings.embedding.max_tokens, self.info.max_seq_length)
        self.batch_size = settings.embedding.batch_size
        self.threads = settings.embedding.threads or cpu_count()
        self.token_budget = token_budget
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._encoder: tokenizers.Tokenizer | None = None
        self._session: onnxruntime.InferenceSession | None = None

    @property
    def tokenizer(self) -> tokenizers.Tokenizer:
        """The model's tokenizer, without truncation or padding (for counting tokens)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.info.folder)
        return self._tokenizer

    @property
    def onnx_file(self) -> Path:
        """The cached ONNX file this embedder runs (it may not exist before :meth:`warm_up`)."""
        return onnx_path(self.info.name, self.info.folder, self.settings.cache_dir, self.quantize)

    def warm_up(self) -> None:
        """Export the model if it is not cached yet and open the inference session."""
        self._ready()

    def _ready(self) -> tuple[tokenizers.Tokenizer, onnxruntime.InferenceSession]:
        if self._encoder is None or self._session is None:
            enforce_offline(self.settings.allow_network)
            path = export_onnx(self.info, self.settings.cache_dir, self.quantize)
            self._session = _session(path, self.threads)
            self._encoder = load_tokenizer(self.info.folder)
            self._encoder.enable_truncation(self.max_tokens)
        return self._encoder, self._session

    def _run(self, session: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(["sentence_embedding"], feeds)[0], dtype=np.float32)

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed passages, longest first in batches of similar length; rows keep the input order.

        ``progress`` receives the number of texts finished in each batch (``tqdm.update`` fits).
        """
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return result
        encoder, session = self._ready()
        encodings = encoder.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        for batch in length_batches(lengths, batch_size or self.batch_size, self.token_budget):
            result[batch] = self._run(session, _pad([encodings[i] for i in batch]))
            if progress is not None:
                progress(len(batch))
        return result

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (a single unpadded pass)."""
        encoder, session = self._ready()
        return self._run(session, _pad([encoder.encode(text)]))[0]
