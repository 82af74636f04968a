"""Typed configs for every recipe, saved and loaded as YAML.

One pydantic model per recipe; each field has a one-line doc. ``load_config`` reads a YAML file
into the right model (the ``recipe`` key picks it) and says which key is wrong when a value is
not allowed; ``save_config`` writes one back, so a run can be repeated from its saved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag_app.errors import ConfigError, RagAppError


class TrainingError(RagAppError):
    """A recipe cannot run as configured (no GPU for QLoRA, no data, a failed step)."""

    exit_code = 2


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainArgs(_Config):
    """The optimisation loop, shared by every recipe (passed to the HF/TRL trainer)."""

    output_dir: Path = Path("runs/run")
    """Where checkpoints, the final weights or adapter, metrics and the config are written."""
    max_steps: int = Field(100, ge=1)
    """Optimizer steps."""
    batch_size: int = Field(4, ge=1)
    """Sequences per device per step (before gradient accumulation)."""
    grad_accum: int = Field(1, ge=1)
    """Gradient accumulation steps; the effective batch is ``batch_size * grad_accum``."""
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_seq_length: int = Field(512, ge=8)
    """Longer rows are cut at the end by the trainer; an SFT row cut before its answer is dropped
    and counted in the run's ``rows_dropped_too_long``."""
    seed: int = 0
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate on the validation split every N steps (default: only at the end)."""
    threads: int | None = Field(None, ge=1)
    """Torch threads on CPU; unset means one per core."""
    bf16: bool = False
    """Train in bfloat16 mixed precision (GPU, or CPUs with AVX512-BF16)."""
    gradient_checkpointing: bool = False
    save_checkpoints: bool = False
    """Keep intermediate checkpoints (off: only the final weights are written)."""
    max_minutes: float | None = Field(None, gt=0)
    """Stop after this many minutes of training even before ``max_steps`` (a CPU budget)."""


class LoraArgs(_Config):
    """LoRA (and QLoRA) adapter shape."""

    r: int = Field(16, ge=1, le=512)
    """Rank of the update matrices."""
    alpha: int = Field(32, ge=1)
    """Scaling numerator: the update is scaled by ``alpha / r``."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names to adapt, or ``all-linear``."""
    top_layers: int | None = Field(None, ge=1)
    """Adapt only the last this many decoder layers (unset: all). Backpropagation then stops at
    the lowest adapted layer: with 8 of 24 layers a CPU step costs about half as much."""


class PromptArgs(_Config):
    """Prompt tuning and prefix tuning: learned virtual tokens."""

    num_virtual_tokens: int = Field(20, ge=1, le=512)
    init_text: str | None = None
    """Prompt tuning only: initialise the virtual tokens from this text (else random)."""
    prefix_projection: bool = False
    """Prefix tuning only: reparameterise the prefix through an MLP (more stable, more parameters)."""


class DataSource(_Config):
    """Where the training rows come from: a folder written by ``rag-app finetune data``, or JSONL files."""

    train: Path = Path("data/train.jsonl")
    """JSONL of ``{"prompt": [...], "completion": [...]}`` (chat) or ``{"text": ...}`` rows."""
    validation: Path | None = Path("data/validation.jsonl")
    max_train_rows: int | None = Field(None, ge=1)
    max_validation_rows: int | None = Field(None, ge=1)


class SFTRecipe(_Config):
    """``rag-app finetune sft``: supervised fine-tuning of the generator on chat rows."""

    recipe: Literal["sft"] = "sft"
    method: Literal["lora", "qlora", "prompt", "prefix", "full"] = "lora"
    """lora | qlora (4-bit base, CUDA only) | prompt (prompt tuning) | prefix (prefix tuning) | full."""
    model: str = "SmolLM2-135M-Instruct"
    """Base model: a packaged name, a local folder or a hub id (as ``generator.model``)."""
    data: DataSource = Field(default_factory=DataSource)
    train: TrainArgs = Field(default_factory=TrainArgs)
    lora: LoraArgs = Field(default_factory=LoraArgs)
    prompt: PromptArgs = Field(default_factory=PromptArgs)
    register_adapter: bool = True
    """Record the adapter in the registry when training ends (full fine-tuning is never registered)."""
    name: str | None = None
    """Registry name of the adapter (default: the output folder's name)."""

    @model_validator(mode="after")
    def _check(self) -> SFTRecipe:
        if self.method == "full" and self.train.learning_rate > 1e-3:
            raise ValueError(
                f"train.learning_rate {self.train.learning_rate} is too high for method 'full' "
                "(use about 1e-5 to 1e-4; 2e-4 and above suit adapters)"
            )
        return self


class CausalPretrainRecipe(_Config):
    """``rag-app pretrain causal``: a small Llama-style decoder and its BPE tokenizer, from scratch."""

    recipe: Literal["pretrain-causal"] = "pretrain-causal"
    corpus: list[Path] = Field(default_factory=lambda: [Path("corpus")])
    """Text files or folders of ``.txt``/``.md`` files (one document per file, paragraphs kept)."""
    vocab_size: int = Field(8000, ge=260)
    """BPE vocabulary size, 256 byte tokens plus special tokens included."""
    n_layer: int = Field(4, ge=1)
    n_embd: int = Field(256, ge=8)
    n_head: int = Field(4, ge=1)
    intermediate_size: int | None = Field(None, ge=8)
    """MLP width (default: ``8/3 * n_embd`` rounded up to a multiple of 32, as Llama does)."""
    validation_share: float = Field(0.05, gt=0.0, lt=0.5)
    """Share of the token blocks held out for loss and perplexity."""
    train: TrainArgs = Field(default_factory=lambda: TrainArgs(learning_rate=1e-3, max_seq_length=256))

    @model_validator(mode="after")
    def _check(self) -> CausalPretrainRecipe:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class MaskedPretrainRecipe(_Config):
    """``rag-app pretrain masked``: a small BERT-style encoder, WordPiece tokenizer, optional NSP."""

    recipe: Literal["pretrain-masked"] = "pretrain-masked"
    corpus: list[Path] = Field(default_factory=lambda: [Path("corpus")])
    """Text files or folders; sentence pairs for NSP are consecutive lines within a document."""
    vocab_size: int = Field(8000, ge=200)
    n_layer: int = Field(4, ge=1)
    n_embd: int = Field(256, ge=8)
    n_head: int = Field(4, ge=1)
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)
    nsp: bool = False
    """Also train next-sentence prediction (BERT's second objective)."""
    validation_share: float = Field(0.05, gt=0.0, lt=0.5)
    train: TrainArgs = Field(default_factory=lambda: TrainArgs(learning_rate=5e-4, max_seq_length=128))

    @model_validator(mode="after")
    def _check(self) -> MaskedPretrainRecipe:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class ContinuedPretrainRecipe(_Config):
    """``rag-app pretrain continued``: domain-adaptive pretraining of the generator on an index's chunks."""

    recipe: Literal["pretrain-continued"] = "pretrain-continued"
    index: Path = Path("my-index")
    """Index folder whose chunk texts are the corpus."""
    model: str = "SmolLM2-135M-Instruct"
    method: Literal["lora", "full"] = "lora"
    """``lora`` trains an adapter (cheap, registrable); ``full`` updates every weight."""
    lora: LoraArgs = Field(default_factory=LoraArgs)
    validation_share: float = Field(0.05, gt=0.0, lt=0.5)
    train: TrainArgs = Field(default_factory=lambda: TrainArgs(learning_rate=1e-4, max_seq_length=256))


class GroundedDataRecipe(_Config):
    """``rag-app finetune data``: RAFT-style grounded chat rows, deduplicated and split, with a data card."""

    recipe: Literal["data"] = "data"
    source: Literal["squad", "index", "jsonl"] = "squad"
    """squad: ../shared/data/squad-dev style folder; index: an index folder plus questions; jsonl:
    question/context/answer rows (what eval's active-learning selection writes)."""
    path: Path = Path("../shared/data/squad-dev")
    """The squad folder, the index folder, or the JSONL file."""
    questions: Path | None = None
    """With ``source: index``: JSONL of ``{"question", "answer"}`` rows to ground in the index."""
    articles: tuple[int, int] | None = None
    """With ``source: squad``: 1-based inclusive range of articles (titles in file order) to use."""
    distractors: int = Field(2, ge=0, le=20)
    """Distractor passages shown with the right one."""
    unanswerable_share: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of rows whose sources leave out the right passage: target "not in the documents"."""
    validation_share: float = Field(0.1, ge=0.0, lt=0.9)
    max_rows: int | None = Field(None, ge=1)
    """Keep at most this many rows (before the split), sampled with ``seed``."""
    seed: int = 0
    out: Path = Path("data")
    """Folder for train.jsonl, validation.jsonl and data_card.json."""


RuleNegative = Literal[
    "distractor_span", "swapped_fact", "wrong_citation", "false_abstention", "answered_unanswerable"
]
RULE_NEGATIVES: tuple[RuleNegative, ...] = (
    "distractor_span", "swapped_fact", "wrong_citation", "false_abstention", "answered_unanswerable"
)  # fmt: skip
"""The negatives made by rules from a grounded example (see :mod:`finetune.preferences`)."""


class PreferenceRecipe(_Config):
    """``rag-app finetune preferences``: preference pairs (prompt, chosen, rejected) with a data card."""

    recipe: Literal["preferences"] = "preferences"
    squad: Path | None = Path("../shared/data/squad-dev")
    """A SQuAD-style folder (passages.jsonl + qa.jsonl) for contrastive pairs; null: none."""
    articles: tuple[int, int] | None = (1, 16)
    """1-based inclusive range of the SQuAD articles to use."""
    jsonl: Path | None = None
    """question/context/answer JSONL rows for contrastive pairs (what eval's selection writes)."""
    index: Path | None = None
    """An index folder for contrastive pairs grounded in it (with ``questions``)."""
    questions: Path | None = None
    """With ``index``: JSONL of ``{"question", "answer"}`` rows."""
    distractors: int = Field(2, ge=1, le=20)
    """Distractor passages shown with the right one (the hard negatives come from them)."""
    unanswerable_share: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of questions shown without their passage (chosen = the abstention sentence)."""
    negatives: list[RuleNegative] = Field(default_factory=lambda: list(RULE_NEGATIVES))
    """The rule-made negative types to build."""
    model_negatives: int = Field(0, ge=0)
    """Ask the generator this many prompts and keep its wrong answers as ``model_wrong`` pairs."""
    model: str | None = None
    """The generator for ``model_negatives`` (default: the configured ``generator.model``)."""
    halueval: Path | None = Path("../shared/data/halueval-qa/qa_pairs.jsonl")
    """HaluEval QA pairs (right vs hallucinated answer); null: none."""
    halueval_pairs: tuple[int, int] = (0, 3999)
    """Inclusive range of HaluEval ``pair_id`` to use (4,000-4,999 are kept for evaluation)."""
    feedback: Path | None = None
    """A data folder with the app's ``feedback.sqlite``: corrections and thumbs up over down."""
    max_per_type: int | None = Field(1000, ge=1)
    """At most this many pairs of each type (a seeded sample), so no type dominates."""
    validation_share: float = Field(0.1, ge=0.0, lt=0.9)
    """Share of source documents (articles, passages, questions) held out, whole."""
    seed: int = 0
    out: Path = Path("data/preferences")
    """Folder for train.jsonl, validation.jsonl and data_card.json."""

    @model_validator(mode="after")
    def _check(self) -> PreferenceRecipe:
        if self.halueval_pairs[0] > self.halueval_pairs[1]:
            raise ValueError(f"halueval_pairs must be (first, last), got {self.halueval_pairs}")
        return self


class PreferenceData(_Config):
    """Preference pairs written by ``rag-app finetune preferences`` (or JSONL of the same rows)."""

    train: Path = Path("data/preferences/train.jsonl")
    """JSONL of ``{"prompt": [...], "chosen": [...], "rejected": [...]}`` rows (``meta`` optional)."""
    validation: Path | None = Path("data/preferences/validation.jsonl")
    max_train_rows: int | None = Field(None, ge=1)
    max_validation_rows: int | None = Field(None, ge=1)


class RewardRecipe(_Config):
    """``rag-app finetune reward``: a reward model (a scalar head over a LoRA-adapted model) trained
    with TRL's ``RewardTrainer`` to score chosen above rejected."""

    recipe: Literal["reward"] = "reward"
    model: str = "SmolLM2-135M-Instruct"
    """Base model: a packaged generator name or a local folder (any model with a classification head)."""
    data: PreferenceData = Field(default_factory=PreferenceData)
    train: TrainArgs = Field(default_factory=lambda: TrainArgs(learning_rate=1e-4, max_seq_length=512))
    lora: LoraArgs = Field(default_factory=LoraArgs)
    center_rewards_coefficient: float | None = Field(None, ge=0.0)
    """Pull the rewards' mean towards 0 (Eisenstein et al., 2023); unset: off."""
    guard_baseline: bool = True
    """Also score the validation pairs with the guard (a reward with no training) for comparison."""
    register_adapter: bool = True
    name: str | None = None


class DPORecipe(_Config):
    """``rag-app finetune dpo``: direct preference optimisation of a LoRA adapter (TRL's ``DPOTrainer``)."""

    recipe: Literal["dpo"] = "dpo"
    model: str = "SmolLM2-135M-Instruct"
    sft_adapter: str | None = None
    """Start from this SFT adapter (a folder or a registry name): the usual SFT -> DPO order. The
    reference is then the SFT model; without it, a fresh LoRA adapter on the base model."""
    data: PreferenceData = Field(default_factory=PreferenceData)
    train: TrainArgs = Field(default_factory=lambda: TrainArgs(learning_rate=5e-5, max_seq_length=512))
    lora: LoraArgs = Field(default_factory=LoraArgs)
    beta: float = Field(0.1, gt=0.0)
    """How far the policy may move from the reference (the KL weight; IPO's regulariser)."""
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    """sigmoid (the DPO paper) | ipo (Azar et al., bounded) | hinge (SLiC) | robust (noisy labels)."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """Assumed share of flipped labels (``robust`` and ``sigmoid``)."""
    reference: Literal["adapter-disabled", "copy"] = "adapter-disabled"
    """adapter-disabled: the reference is the same weights with the new adapter switched off (no
    second copy in memory); copy: a second frozen model (checked against free memory first)."""
    register_adapter: bool = True
    name: str | None = None


class RLHFRecipe(_Config):
    """``rag-app finetune rlhf``: online RL (TRL's GRPO or RLOO) of a LoRA policy against a reward
    for grounded, cited answers and right abstentions, with a KL penalty to the reference."""

    recipe: Literal["rlhf"] = "rlhf"
    algorithm: Literal["grpo", "rloo"] = "grpo"
    model: str = "SmolLM2-135M-Instruct"
    sft_adapter: str | None = None
    """Start the policy from this adapter (a folder or a registry name)."""
    data: PreferenceData = Field(default_factory=PreferenceData)
    """Prompts (with their sources and gold answers in ``meta``) come from preference rows."""
    train: TrainArgs = Field(
        default_factory=lambda: TrainArgs(
            learning_rate=1e-5, max_seq_length=512, batch_size=4, logging_steps=1
        )
    )
    lora: LoraArgs = Field(default_factory=LoraArgs)
    reward_model: str | None = None
    """A reward model from ``rag-app finetune reward`` (a folder or a registry name); unset: none."""
    reward_model_weight: float = Field(1.0, ge=0.0)
    guard_weight: float = Field(1.0, ge=0.0)
    """Weight of the guard's support score of the answer against the prompt's sources (0 to 1)."""
    citation_penalty: float = Field(0.5, ge=0.0)
    """Subtracted when an answer cites nothing, a source that does not exist, or not the right one."""
    abstention_bonus: float = Field(0.5, ge=0.0)
    """Added for the abstention sentence when the sources lack the answer (subtracted when they hold it)."""
    unsupported_penalty: float = Field(1.0, ge=0.0)
    """Subtracted for an answer where the sources lack one."""
    beta: float = Field(0.04, ge=0.0)
    """KL penalty to the reference policy (0: none)."""
    num_generations: int = Field(4, ge=2)
    """Answers sampled per prompt (the group the advantages are computed in)."""
    max_completion_length: int = Field(32, ge=4)
    """Tokens per sampled answer: answers are short, and 2 cores sample slowly."""
    temperature: float = Field(0.9, gt=0.0)
    register_adapter: bool = True
    name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> RLHFRecipe:
        if self.train.batch_size % self.num_generations:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of num_generations "
                f"({self.num_generations}): each batch holds whole groups of answers"
            )
        if self.reward_model is None and self.guard_weight == 0:
            raise ValueError("no reward: set reward_model or a guard_weight above 0")
        return self


Recipe = Annotated[
    SFTRecipe
    | CausalPretrainRecipe
    | MaskedPretrainRecipe
    | ContinuedPretrainRecipe
    | GroundedDataRecipe
    | PreferenceRecipe
    | RewardRecipe
    | DPORecipe
    | RLHFRecipe,
    Field(discriminator="recipe"),
]
RECIPES: dict[str, type[_Config]] = {
    "sft": SFTRecipe,
    "pretrain-causal": CausalPretrainRecipe,
    "pretrain-masked": MaskedPretrainRecipe,
    "pretrain-continued": ContinuedPretrainRecipe,
    "data": GroundedDataRecipe,
    "preferences": PreferenceRecipe,
    "reward": RewardRecipe,
    "dpo": DPORecipe,
    "rlhf": RLHFRecipe,
}
"""``recipe`` key -> config class."""


def to_yaml(config: BaseModel) -> str:
    """The config as YAML (paths as strings, keys in field order)."""
    import yaml

    return str(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))


def save_config(config: BaseModel, path: Path) -> Path:
    """Write ``config`` to ``path`` as YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config), encoding="utf-8")
    return path


def load_config(path: Path, expected: type[_Config] | None = None, /, **overrides: Any) -> Any:
    """Read a YAML config; ``recipe:`` picks the class unless ``expected`` is given.

    ``overrides`` are dotted keys (``train.max_steps=5``) applied on top of the file.
    Raises :class:`ConfigError` naming the file and the key when a value is not allowed.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    cls = expected or RECIPES.get(str(data.get("recipe")))
    if cls is None:
        raise ConfigError(f"{path}: 'recipe' must be one of {', '.join(RECIPES)}, got {data.get('recipe')!r}")
    return validate(cls, data, where=str(path))


def validate(cls: type[_Config], data: dict[str, Any], *, where: str = "config") -> Any:
    """``cls(**data)`` with a :class:`ConfigError` that names each wrong key, what it got and why."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            problems.append(f"{key}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError(f"invalid {cls.__name__} in {where}: " + "; ".join(problems)) from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[leaf] = value


def build_recipe(cls: type[_Config], config_path: Path | None = None, /, **overrides: Any) -> Any:
    """A recipe from an optional YAML file plus dotted-key overrides (``None`` values are skipped):
    what the CLI does with ``--config`` and its flags."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if config_path is not None:
        return load_config(config_path, cls, **given)
    data: dict[str, Any] = {}
    for dotted, value in given.items():
        _set_dotted(data, dotted, value)
    return validate(cls, data, where="command-line options")
