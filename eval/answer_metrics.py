"""Answer metrics: SQuAD exact match and token F1 (official normalisation), BLEU, ROUGE-L,
semantic similarity, and the generator's perplexity on held-out text.

Exact match and token F1 are defined in :mod:`rag_app.answer_match` (the training data builders
use them too) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag_app.answer_match import best_over_truths, exact_match, normalize_answer, token_f1

__all__ = [
    "best_over_truths",
    "bleu",
    "exact_match",
    "normalize_answer",
    "perplexity",
    "rouge_l",
    "semantic_similarity",
    "token_f1",
]


# -- n-gram overlap: BLEU and ROUGE-L -------------------------------------------------------------
def bleu(prediction: str, truths: Sequence[str]) -> float:
    """Sentence BLEU in [0, 1] against all references (sacrebleu, exponential smoothing).

    sacrebleu is the reference implementation (Post, 2018); scores are divided by 100.
    """
    import sacrebleu

    refs = [t for t in truths if t.strip()]
    if not refs or not prediction.strip():
        return 0.0
    return float(sacrebleu.sentence_bleu(prediction, refs).score) / 100.0


def rouge_l(prediction: str, truths: Sequence[str]) -> float:
    """ROUGE-L F-measure (longest common subsequence, Porter-stemmed), best over the references."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return max((scorer.score(t, prediction)["rougeL"].fmeasure for t in truths if t.strip()), default=0.0)


# -- embedding similarity -------------------------------------------------------------------------
def semantic_similarity(
    embedder: Any, predictions: Sequence[str], truths: Sequence[Sequence[str]]
) -> list[float]:
    """Cosine between each prediction and its closest reference, with ``embedder`` (one batch).

    Embeddings are L2-normalised by the project's embedders, so the dot product is the cosine;
    values are clipped to [0, 1] (a negative cosine means unrelated, as 0 does).
    """
    import numpy as np

    flat = [t for refs in truths for t in refs]
    if not predictions or not flat:
        return [0.0] * len(predictions)
    vectors = np.asarray(embedder.embed_documents([*predictions, *flat]), dtype=np.float32)
    pred, refs = vectors[: len(predictions)], vectors[len(predictions) :]
    out, pos = [], 0
    for i, group in enumerate(truths):
        block = refs[pos : pos + len(group)]
        pos += len(group)
        out.append(float(np.clip((block @ pred[i]).max(), 0.0, 1.0)) if len(group) else 0.0)
    return out


# -- perplexity -----------------------------------------------------------------------------------
def perplexity(
    model: Any, tokenizer: Any, texts: Sequence[str], *, window: int = 512, stride: int = 256
) -> dict[str, float]:
    """Perplexity of a causal LM on ``texts`` (sliding windows, each token scored once).

    Every text is scored on its own: windows of ``window`` tokens advance by ``stride``, and only
    the tokens a window adds beyond the previous one count, so each has at least
    ``window - stride`` tokens of left context (the Hugging Face "perplexity of fixed-length
    models" method). Returns ``perplexity``, ``nll`` (mean per token) and ``tokens``.
    """
    import math

    import torch

    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            length = ids.size(1)
            previous_end = 0
            for begin in range(0, max(length - 1, 1), stride):
                end = min(begin + window, length)
                scored = end - previous_end
                if end - begin < 2 or scored <= 0:
                    break
                chunk = ids[:, begin:end]
                labels = chunk.clone()
                labels[:, :-scored] = -100
                out = model(chunk, labels=labels)
                counted = int((labels[:, 1:] != -100).sum())
                total_nll += float(out.loss) * counted
                total_tokens += counted
                previous_end = end
                if end == length:
                    break
    nll = total_nll / total_tokens if total_tokens else float("nan")
    return {
        "perplexity": math.exp(nll) if total_tokens and nll < 50 else float("inf"),
        "nll": nll,
        "tokens": total_tokens,
    }
