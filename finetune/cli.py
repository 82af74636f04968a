"""``rag-app pretrain``, ``rag-app finetune`` and ``rag-app adapters``: training and the adapter registry.

The main ``rag-app`` group loads this module only when one of these groups is invoked or listed.
Each group's commands live in their own module (:mod:`finetune.cli_pretrain`,
:mod:`finetune.cli_finetune` and :mod:`finetune.cli_align`, :mod:`finetune.cli_adapters`), which
import only click; the training code itself (torch, TRL, PEFT) is imported inside each command.
"""

from __future__ import annotations

import click

from finetune import cli_adapters, cli_align, cli_finetune, cli_pretrain


@click.group("pretrain", commands=cli_pretrain.COMMANDS)
def pretrain_group() -> None:
    """Pretraining: causal LM or masked LM from scratch, continued pretraining on an index."""


@click.group("finetune", commands=cli_finetune.COMMANDS + cli_align.COMMANDS)
def finetune_group() -> None:
    """Fine-tuning: grounded data, SFT (LoRA, QLoRA, prompt, prefix, full), preference pairs, reward
    model, DPO and RLHF."""


@click.group("adapters", commands=cli_adapters.COMMANDS)
def adapters_group() -> None:
    """The adapter registry: list, inspect, promote, roll back, merge."""
