"""Masked-LM pretraining from scratch: a WordPiece tokenizer, then a small BERT-style encoder.

The recipe, top to bottom:

1. read the corpus and train a WordPiece tokenizer (``[CLS]``, ``[SEP]``, ``[MASK]``) with ``tokenizers``;
2. build examples: without NSP, blocks of ``train.max_seq_length`` tokens; with NSP (BERT's second
   objective), sentence pairs from consecutive lines of a document, half of them with the second
   sentence replaced by a random line of another document (``next_sentence_label`` 1);
3. hold out the last ``validation_share`` of the examples;
4. train ``BertForMaskedLM`` (or ``BertForPreTraining`` with NSP) with the plain ``Trainer``;
   ``DataCollatorForLanguageModeling`` masks ``mlm_probability`` of the tokens (80/10/10);
5. report held-out loss and perplexity (with NSP the loss is MLM + NSP, and ``nsp_accuracy`` is
   added), save model and tokenizer to ``<output_dir>/model``.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from finetune.common import RunResult, finish, require, set_threads, train_and_evaluate, trainer_kwargs
from finetune.config import MaskedPretrainRecipe, TrainingError
from finetune.corpus import read_corpus, split_blocks, train_wordpiece_tokenizer


def pretrain_masked(recipe: MaskedPretrainRecipe) -> RunResult:
    """Train tokenizer and encoder per ``recipe``; returns the model folder and its metrics."""
    require("datasets")
    set_threads(recipe.train)
    docs = read_corpus(recipe.corpus)
    tokenizer = train_wordpiece_tokenizer(docs, recipe.vocab_size)
    rows = nsp_pairs(docs, tokenizer, recipe) if recipe.nsp else mlm_blocks(docs, tokenizer, recipe)
    train_rows, validation_rows = split_blocks(rows, recipe.validation_share)

    model = build_model(recipe, tokenizer)
    trainer = build_trainer(recipe, model, tokenizer, train_rows, validation_rows)
    metrics, history = train_and_evaluate(trainer, True, recipe.train.max_minutes)
    if recipe.nsp:
        metrics["nsp_accuracy"] = nsp_accuracy(trainer.model, tokenizer, validation_rows)
        metrics["loss_includes_nsp"] = 1.0
    metrics.update(
        vocab_size=len(tokenizer), train_rows=len(train_rows), validation_rows=len(validation_rows)
    )

    weights = recipe.train.output_dir / "model"
    trainer.save_model(str(weights))
    tokenizer.save_pretrained(str(weights))
    return finish(RunResult(recipe.train.output_dir, weights, metrics, history), recipe)


def mlm_blocks(docs: list[str], tokenizer: Any, recipe: MaskedPretrainRecipe) -> list[dict[str, Any]]:
    """``[CLS] block [SEP]`` rows of ``max_seq_length`` tokens over the concatenated documents."""
    size = recipe.train.max_seq_length - 2
    stream: list[int] = []
    for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        stream.extend([*ids, tokenizer.sep_token_id])
    rows = [
        {"input_ids": [tokenizer.cls_token_id, *stream[i : i + size], tokenizer.sep_token_id]}
        for i in range(0, len(stream) - size + 1, size)
    ]
    if len(rows) < 2:
        raise TrainingError(f"the corpus gives {len(stream)} tokens: too few for blocks of {size}")
    return rows


def nsp_pairs(docs: list[str], tokenizer: Any, recipe: MaskedPretrainRecipe) -> list[dict[str, Any]]:
    """Sentence pairs (consecutive lines) labelled 0 = is next, 1 = random line of another document."""
    rng = random.Random(recipe.train.seed)
    lines = [[line.strip() for line in doc.splitlines() if line.strip()] for doc in docs]
    if len(lines) < 2 or sum(len(d) for d in lines) < 4:
        raise TrainingError("NSP needs at least two documents with several lines each (one sentence a line)")
    rows = []
    for d, doc in enumerate(lines):
        for first, second in itertools.pairwise(doc):
            label = int(rng.random() < 0.5)
            if label:
                other = rng.choice([o for o in range(len(lines)) if o != d and lines[o]])
                second = rng.choice(lines[other])
            encoded = tokenizer(
                first, second, truncation="longest_first", max_length=recipe.train.max_seq_length
            )
            rows.append(dict(encoded) | {"next_sentence_label": label})
    return rows


def build_model(recipe: MaskedPretrainRecipe, tokenizer: Any) -> Any:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForPreTraining

    torch.manual_seed(recipe.train.seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.n_embd,
        num_hidden_layers=recipe.n_layer,
        num_attention_heads=recipe.n_head,
        intermediate_size=4 * recipe.n_embd,
        max_position_embeddings=max(512, recipe.train.max_seq_length),
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertForPreTraining(config) if recipe.nsp else BertForMaskedLM(config)


def build_trainer(
    recipe: MaskedPretrainRecipe,
    model: Any,
    tokenizer: Any,
    train: list[dict[str, Any]],
    validation: list[dict[str, Any]],
) -> Any:
    """``Trainer`` with the MLM collator (it pads, masks, and passes ``next_sentence_label`` through)."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    args = TrainingArguments(**trainer_kwargs(recipe.train, has_validation=True))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=recipe.mlm_probability)
    return Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(validation),
        data_collator=collator,
    )


def nsp_accuracy(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Share of held-out pairs whose is-next label the model gets right (no masking)."""
    import torch

    model.eval()
    right = 0
    with torch.no_grad():
        for row in rows:
            inputs = {k: torch.tensor([v]) for k, v in row.items() if k != "next_sentence_label"}
            logits = model(**{k: v.to(model.device) for k, v in inputs.items()}).seq_relationship_logits
            right += int(int(logits.argmax(-1)) == row["next_sentence_label"])
    return round(right / len(rows), 4) if rows else 0.0
