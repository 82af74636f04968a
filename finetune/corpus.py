"""Text for pretraining: documents from files or an index, tokenizers trained on them, token blocks.

* :func:`read_corpus`: one document per ``.txt``/``.md`` file (folders are walked in name order);
* :func:`index_texts`: the chunk texts of an index folder (its SQLite docstore, read-only);
* :func:`train_bpe_tokenizer`: a byte-level BPE tokenizer (Llama/GPT style) with ``tokenizers``,
  with ChatML special tokens and chat template, so a model pretrained with it can be SFT-ed;
* :func:`train_wordpiece_tokenizer`: a BERT WordPiece tokenizer with ``[CLS]``/``[SEP]``/``[MASK]``;
* :func:`pack_blocks` and :func:`split_blocks`: documents joined by EOS, cut in equal blocks,
  a held-out share kept for loss and perplexity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from finetune.config import TrainingError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text"}
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, as SmolLM2 uses: a from-scratch model can then be instruction-tuned with the same rows."""


def read_corpus(paths: Sequence[Path]) -> list[str]:
    """The non-empty documents under ``paths`` (files, or folders walked for text files)."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise TrainingError(f"corpus path not found: {path}")
    docs = [text for f in files if (text := f.read_text(encoding="utf-8", errors="replace").strip())]
    if not docs:
        raise TrainingError(
            f"no text found in {', '.join(map(str, paths))} (files ending {sorted(TEXT_SUFFIXES)})"
        )
    return docs


def index_texts(index: Path) -> list[str]:
    """The chunk texts of an index, in chunk order."""
    from rag_app.store.docstore import DOCSTORE_NAME, Docstore

    path = Path(index) / DOCSTORE_NAME
    if not path.is_file():
        raise TrainingError(f"{index} is not an index folder (no {DOCSTORE_NAME})")
    store = Docstore(path, readonly=True)
    try:
        texts = [text for _, text in store.iter_texts() if text.strip()]
    finally:
        store.close()
    if not texts:
        raise TrainingError(f"index {index} has no chunks")
    return texts


def texts_digest(texts: Iterable[str]) -> str:
    """First 16 hex digits of the SHA-256 of the texts (the data hash the registry records)."""
    sha = hashlib.sha256()
    for text in texts:
        sha.update(text.encode("utf-8"))
        sha.update(b"\0")
    return sha.hexdigest()[:16]


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (a ``PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def train_wordpiece_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A BERT WordPiece tokenizer (lower-cased) trained on ``texts`` (a ``PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def pack_blocks(texts: Sequence[str], tokenizer: Any, block: int) -> list[list[int]]:
    """Documents tokenized, joined by EOS and cut into blocks of ``block`` tokens (the tail is dropped)."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    blocks = [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]
    if len(blocks) < 2:
        raise TrainingError(
            f"the corpus gives {len(stream)} tokens, fewer than two blocks of {block}: "
            "add text or lower train.max_seq_length"
        )
    return blocks


def split_blocks(blocks: list[Any], validation_share: float) -> tuple[list[Any], list[Any]]:
    """The last ``validation_share`` of the blocks (at least one) are held out."""
    n_val = max(1, round(len(blocks) * validation_share))
    return blocks[:-n_val], blocks[-n_val:]
