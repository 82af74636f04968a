"""Evaluation datasets: a JSONL file, a BEIR folder, the bundled real sets, or a testset drawn
from the user's own index.

* :func:`load_jsonl`: one JSON object per line with ``question`` and any of ``answer`` /
  ``answers``, ``context`` / ``contexts``, ``context_ids`` (or ``relevant``: ids -> relevance),
  ``id``, ``type``.
* :func:`load_beir`: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
* ``squad-dev`` and ``scifact``: the real sets in ``../shared/data`` (:func:`load_named`), with
  their passages as documents, so ``rag-app eval run`` can build the index when it is missing.
* :func:`generate_testset`: for people with no labelled data, question and answer pairs drawn
  from the indexed chunks by rules (no model): a sentence with a name, number or date becomes a
  question about that span, the span its answer, the chunk its reference context.

Everything is seeded: the same arguments give the same samples in the same order.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.types import EvalSample
from rag_app.documents import LoadedDocument, Section
from rag_app.errors import RagAppError

NAMED = ("squad-dev", "scifact")
DATA_ENV = "RAG_APP_EVAL_DATA"
"""Folder holding ``squad-dev/`` and ``scifact/`` (default: ``../shared/data`` beside the project)."""
WH_WORDS = ("what", "who", "whom", "whose", "when", "where", "which", "why", "how")


class DatasetError(RagAppError):
    """A dataset file or folder is missing or malformed (the message names the file and line)."""


@dataclass
class EvalDataset:
    """Samples to evaluate, and the documents to index when there is no index yet."""

    name: str
    samples: list[EvalSample]
    documents: list[LoadedDocument] = field(default_factory=list)
    """The corpus (BEIR and the named sets); empty for a JSONL file or a generated testset."""
    origin: str = ""
    """The file or folder the samples came from."""

    @property
    def fingerprint(self) -> str:
        """sha256 of the samples (questions, references, ids), the dataset's identity in a run."""
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(json.dumps(sample.to_dict(), sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def head(self, n: int | None, seed: int = 0) -> EvalDataset:
        """A seeded random sample of ``n`` questions (all when ``n`` is None or larger)."""
        if n is None or n >= len(self.samples):
            return self
        picked = random.Random(seed).sample(range(len(self.samples)), n)
        samples = [self.samples[i] for i in sorted(picked)]
        return EvalDataset(self.name, samples, self.documents, self.origin)


def question_type(question: str) -> str:
    """The question's wh-word (``what``, ``who``, ...), ``yes/no`` for auxiliaries, else ``other``."""
    words = re.findall(r"[a-z]+", question.lower())
    for word in words[:4]:
        if word in WH_WORDS:
            return "who" if word in ("whom", "whose") else word
    if words and words[0] in ("is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have"):
        return "yes/no"
    return "other"


# -- files ------------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path} line {number}: not UTF-8 text (save the file as UTF-8)") from exc
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)]


def load_jsonl(path: str | Path) -> EvalDataset:
    """Samples from a JSONL file; every row needs a ``question``."""
    path = Path(path)
    samples: list[EvalSample] = []
    seen: set[str] = set()
    for number, row in _read_jsonl(path):
        question = str(row.get("question") or row.get("user_input") or "").strip()
        if not question:
            raise DatasetError(f"{path} line {number}: no question (each row needs a 'question')")
        sample_id = str(row.get("id") or row.get("_id") or f"q{number}")
        if sample_id in seen:
            raise DatasetError(f"{path} line {number}: id {sample_id!r} repeats an earlier row")
        seen.add(sample_id)
        relevant = row.get("relevant") or row.get("context_ids") or row.get("context_id") or {}
        if not isinstance(relevant, dict):
            relevant = {doc: 1 for doc in _strings(relevant)}
        samples.append(
            EvalSample(
                id=sample_id,
                question=question,
                answers=_strings(row.get("answers", row.get("answer", row.get("reference")))),
                contexts=_strings(row.get("contexts", row.get("context", row.get("reference_contexts")))),
                relevant={str(k): int(v) for k, v in relevant.items()},
                qtype=str(row.get("type") or row.get("qtype") or question_type(question)),
                metadata={k: v for k, v in row.items() if k in ("title", "source", "group")},
            )
        )
    if not samples:
        raise DatasetError(f"{path}: no questions in the file")
    return EvalDataset(path.stem, samples, origin=str(path))


def _beir_documents(corpus: Path, prefix: str) -> list[LoadedDocument]:
    documents = []
    for number, row in _read_jsonl(corpus):
        if "_id" not in row or "text" not in row:
            raise DatasetError(f"{corpus} line {number}: a BEIR corpus row needs '_id' and 'text'")
        title = str(row.get("title") or "")
        sections = [Section(title, kind="heading")] if title else []
        sections.append(Section(str(row["text"]), heading_path=(title,) if title else ()))
        documents.append(LoadedDocument(f"{prefix}:{row['_id']}", "text", sections))
    return documents


def load_beir(folder: str | Path, split: str = "test", *, name: str | None = None) -> EvalDataset:
    """A BEIR folder: the queries that have qrels in ``qrels/<split>.tsv``, and the corpus."""
    folder = Path(folder)
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_file):
        if not needed.is_file():
            raise DatasetError(f"{folder} is not a BEIR folder: {needed.relative_to(folder)} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if number == 1 and not parts[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(parts) != 3:
                raise DatasetError(f"{qrels_file} line {number}: expected query-id, corpus-id, score")
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    queries = {str(row["_id"]): str(row["text"]) for _, row in _read_jsonl(folder / "queries.jsonl")}
    name = name or folder.name
    samples = [
        EvalSample(
            qid,
            queries[qid],
            relevant=rels,
            qtype="claim" if name == "scifact" else question_type(queries[qid]),
        )
        for qid, rels in qrels.items()
        if qid in queries
    ]
    return EvalDataset(name, samples, _beir_documents(folder / "corpus.jsonl", name), str(folder))


def squad_documents(passages: Sequence[dict[str, Any]]) -> list[LoadedDocument]:
    """SQuAD passages as documents named ``squad/<passage id>`` under their article title."""
    return [
        LoadedDocument(f"squad/{p['_id']}", "text", [Section(p["text"], heading_path=(p["title"],))])
        for p in passages
    ]


def load_squad(folder: str | Path) -> EvalDataset:
    """SQuAD v1.1 dev as prepared in ``../shared/data/squad-dev`` (passages.jsonl, qa.jsonl)."""
    folder = Path(folder)
    passages = [row for _, row in _read_jsonl(folder / "passages.jsonl")]
    by_id = {p["_id"]: p for p in passages}
    samples = []
    for _, row in _read_jsonl(folder / "qa.jsonl"):
        context = by_id.get(row["context_id"])
        samples.append(
            EvalSample(
                id=str(row["id"]),
                question=str(row["question"]),
                answers=list(dict.fromkeys(row["answers"])),
                contexts=[context["text"]] if context else [],
                relevant={row["context_id"]: 1},
                qtype=question_type(row["question"]),
                metadata={"title": row.get("title", "")},
            )
        )
    return EvalDataset("squad-dev", samples, squad_documents(passages), str(folder))


def data_root(explicit: str | Path | None = None) -> Path:
    """The folder of the bundled real datasets: ``explicit``, ``$RAG_APP_EVAL_DATA``, or ``shared/data``
    beside the working directory or the project."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    candidates = [Path.cwd() / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), candidates[-1])


NAMED_SOURCES = {
    "squad-dev": "SQuAD v1.1 dev as passages.jsonl + qa.jsonl, as shared/data/README.md of the "
    "rag-app workspace describes",
    "scifact": "BEIR SciFact: corpus.jsonl, queries.jsonl, qrels/test.tsv, as BEIR distributes it",
}
"""Where each named set comes from, for the message when it is missing."""


def load_named(name: str, root: str | Path | None = None) -> EvalDataset:
    """``squad-dev`` or ``scifact`` from :func:`data_root`."""
    folder = data_root(root) / name
    if not folder.is_dir():
        source = NAMED_SOURCES.get(name, "")
        raise DatasetError(
            f"dataset {name!r} not found at {folder}; point {DATA_ENV} (or --data-root) at the folder "
            f"holding {name}/ ({source}), or evaluate your own questions: --dataset my-questions.jsonl "
            "(one JSON object per line: question, answer, context) or --dataset generate"
        )
    return load_squad(folder) if name == "squad-dev" else load_beir(folder, "test", name="scifact")


def load_dataset(spec: str | Path, root: str | Path | None = None) -> EvalDataset:
    """A named set, a BEIR folder or a JSONL file."""
    if str(spec) in NAMED:
        return load_named(str(spec), root)
    path = Path(spec)
    if path.is_dir():
        return load_beir(path)
    if not path.exists():
        raise DatasetError(
            f"dataset {spec} not found (give a JSONL file, a BEIR folder, or one of {', '.join(NAMED)})"
        )
    return load_jsonl(path)


# -- a testset from the user's own chunks ------------------------------------------------------------
_SENTENCE = re.compile(r"[^.!?\n]{30,300}[.!?]")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(rf"\b(?:(?:{_MONTHS})\s+\d{{1,2}},?\s+\d{{4}}|\d{{1,2}}\s+(?:{_MONTHS})\s+\d{{4}})\b")
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*(?:\s?(?:%|percent|million|billion|thousand))?")
_NAME = re.compile(r"\b(?:the\s+)?([A-Z][a-z]+(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][a-z]+)+)")
_RULES = (
    (_DATE, "what date", "when"),
    (_YEAR, "what year", "when"),
    (_NUMBER, "how many", "how"),
    (_NAME, "what", "what"),
)


def _question_for(sentence: str) -> tuple[str, str, str] | None:
    """(question, answer span, type) for one sentence, or None when it has no usable span.

    The span is replaced by a wh-phrase in place ("... was played on what date at ...?"): an
    echo question, worded like the passage on purpose (it tests retrieval and extraction).
    """
    sentence = " ".join(sentence.split())
    for pattern, wh, kind in _RULES:
        for match in pattern.finditer(sentence):
            span = (match.group(1) if match.groups() else match.group(0)).strip()
            head, tail = sentence[: match.start()].strip(), sentence[match.end() :].strip().rstrip(".!?")
            if len(head.split()) < 3 or len(span) < 2:
                continue
            if kind == "when" and head.split()[-1].lower() not in ("in", "on", "since", "by", "until", "of"):
                head += " in"
            joint = "" if not tail or tail[0] in ",;:" else " "
            question = f"{head} {wh}{joint}{tail}?"
            return question[0].upper() + question[1:], span, kind
    return None


def generate_testset(store: Any, n: int = 50, *, seed: int = 0) -> EvalDataset:
    """``n`` question/answer pairs from the chunks of an opened :class:`IndexStore`.

    Chunks are visited in a seeded random order; from each, the first sentence with a year, a
    number or a capitalised name gives an echo question ("The game was played in what year?"),
    the span is the reference answer and the chunk the reference context (and relevant id). These
    questions test retrieval and extraction, not reasoning; label your own for anything deeper.
    """
    texts = list(store.docstore.iter_texts())
    random.Random(seed).shuffle(texts)
    samples: list[EvalSample] = []
    for chunk_id, text in texts:
        for sentence in _SENTENCE.findall(text):
            made = _question_for(sentence)
            if made is None:
                continue
            question, answer, kind = made
            hit = store.docstore.hits([(chunk_id, 0.0)])[0]
            samples.append(
                EvalSample(
                    id=f"gen-{chunk_id}",
                    question=question,
                    answers=[answer],
                    contexts=[text],
                    relevant={str(chunk_id): 1},
                    qtype=kind,
                    metadata={"source": hit.source, "generated": True},
                )
            )
            break
        if len(samples) >= n:
            break
    if not samples:
        raise DatasetError("no chunk of the index has a sentence a question can be drawn from")
    return EvalDataset("generated", samples, origin=str(store.folder))
