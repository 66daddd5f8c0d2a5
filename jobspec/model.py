"""Fields of the job spec: types, defaults, ranges and one-line descriptions (shown in OpenAPI).

Aliases from the parameter document (`evaluation_strategy`, `optimizer`, ...) are accepted on input
and rewritten to the one spelling TrainingArguments takes, so the stored spec is normalized.
Cross-field rules live in jobspec/rules.py.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, field_validator, model_validator
from pydantic_core import PydanticCustomError

from jobspec.aliases import RENAMED, validate_with_aliases
from jobspec.choices import DPO_LOSS_TYPES, LR_SCHEDULERS, OPTIMIZERS

Strategy = Literal["no", "steps", "epoch"]
LrScheduler = Literal[LR_SCHEDULERS]  # type: ignore[valid-type]
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]
DpoLossType = Literal[DPO_LOSS_TYPES]  # type: ignore[valid-type]

# Largest id the database holds (BIGINT) and largest step (INTEGER): a bigger number would overflow
# the server's query instead of naming nothing.
MAX_ID = 2**63 - 1
MAX_STEP = 2**31 - 1


class SpecModel(BaseModel):
    # No NaN or infinity (JSON's 1e999 parses as one): neither is a usable hyperparameter, the
    # estimates overflow on them, and PostgreSQL's json refuses them.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        """No NUL byte in any string: PostgreSQL cannot store one, and a spec holding one (in its
        JSON) breaks later queries over the tenant's specs. (pydantic already refuses lone surrogates.)"""
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and "\x00" in text:
                raise PydanticCustomError("string_nul", "must not contain NUL bytes")
        return value


class DataSpec(SpecModel):
    format: Literal["auto", "alpaca", "chat", "sharegpt", "text", "preference", "openai_dpo"] = Field(
        "auto", description="Row format of the dataset; 'auto' uses the format detected at upload. 'preference' "
        "(prompt, chosen, rejected) and 'openai_dpo' (input, preferred_output, non_preferred_output) are for "
        "objective 'dpo' or 'orpo'."
    )
    cutoff_len: int = Field(
        512, ge=8, le=131072,
        description="Maximum length in tokens of one example; longer examples are truncated.",
    )
    val_set_size: float = Field(
        0, ge=0,
        description="Rows held out for evaluation: a fraction of the dataset below 1, a row count from 1.",
    )
    train_on_inputs: bool = Field(
        True, description="Train on the prompt tokens too; false masks them out of the loss."
    )
    packing: bool = Field(
        False,
        description="Pack several training examples into each sequence of up to cutoff_len tokens, "
        "with position ids restarting per example and no attention or loss across examples: "
        "almost no padding. Steps then count packed sequences, not examples.",
    )
    group_by_length: bool = Field(
        False,
        description="Batch training examples of similar length together (less padding, order "
        "still random by group); the cheap alternative to packing.",
    )


class LoraSpec(SpecModel):
    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(16, ge=1, le=4096, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout applied to the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear",
        description="Modules that get adapters: 'all-linear' or a list of module names.",
    )


class TrainingSpec(SpecModel):
    """The TrainingArguments subset, named as TrainingArguments names it. The parameter document's
    names are accepted and stored under these names: evaluation_strategy (eval_strategy), optimizer
    (optim), lr_scheduler (lr_scheduler_type), micro_batch_size (per_device_train_batch_size),
    warmup_ratio (warmup_steps below 1); save_safetensors may only be true (always the case)."""

    model_config = ConfigDict(
        json_schema_extra={"x-aliases": {**RENAMED, "warmup_ratio": "warmup_steps"}},
    )

    num_train_epochs: float = Field(
        3.0, gt=0, le=10000,
        description="Total epochs; a fractional part runs only that fraction of the last epoch.",
    )
    max_steps: int = Field(
        -1, ge=-1, description="Total optimizer steps; overrides num_train_epochs when positive."
    )
    per_device_train_batch_size: int = Field(
        8, ge=1, le=65536, description="Training batch size per device (alias micro_batch_size)."
    )
    per_device_eval_batch_size: int = Field(8, ge=1, le=65536, description="Evaluation batch size per device.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=65536, description="Micro-batches whose gradients are summed before one update."
    )
    learning_rate: float = Field(5e-5, gt=0, le=10, description="Initial learning rate.")
    weight_decay: float = Field(0.0, ge=0, le=10, description="Weight decay of the optimizer.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm; 0 disables clipping.")
    optim: Optimizer = Field("adamw_torch_fused", description="Optimizer (alias optimizer).")
    lr_scheduler_type: LrScheduler = Field(
        "linear", description="Learning-rate schedule (alias lr_scheduler)."
    )
    warmup_steps: float = Field(
        0, ge=0,
        description="Warm-up steps from 0 to learning_rate; a value below 1 is a ratio of all steps "
        "(alias warmup_ratio).",
    )
    fp16: bool = Field(False, description="fp16 mixed precision.")
    bf16: bool = Field(False, description="bf16 mixed precision (NVIDIA Ampere or newer).")
    eval_strategy: Strategy = Field(
        "no", description="When to evaluate: no, steps, epoch (alias evaluation_strategy)."
    )
    eval_steps: float | None = Field(
        None, gt=0,
        description="Steps between evaluations with eval_strategy 'steps'; defaults to logging_steps; "
        "below 1 a ratio of all steps.",
    )
    logging_strategy: Strategy = Field("steps", description="When to log: no, steps, epoch.")
    logging_steps: float = Field(
        500, gt=0, description="Steps between two logs; below 1 a ratio of all steps."
    )
    save_strategy: Literal["no", "steps", "epoch", "best"] = Field(
        "steps", description="When to save checkpoints: no, steps, epoch, best."
    )
    save_steps: float = Field(
        500, gt=0, description="Steps between two checkpoints; below 1 a ratio of all steps."
    )
    save_total_limit: int | None = Field(
        None, ge=1, description="Checkpoints kept; older ones are deleted."
    )
    load_best_model_at_end: bool = Field(
        False, description="Load the best checkpoint (by metric_for_best_model) at the end."
    )
    metric_for_best_model: str | None = Field(
        None, min_length=1, max_length=128,
        description="Metric that picks the best checkpoint, with or without 'eval_'; default loss.",
    )
    greater_is_better: bool | None = Field(
        None, description="Whether a larger metric_for_best_model is better; default from the name."
    )
    push_to_hub: bool = Field(False, description="Push the model to the Hub at every save.")
    hub_model_id: str | None = Field(
        None, min_length=1, max_length=200, description="Hub repository kept in sync with the output."
    )
    report_to: str | list[str] = Field(
        "none", description="Integrations that receive logs: none, all, or names such as tensorboard."
    )
    ignore_data_skip: bool = Field(
        False, description="On resume, do not skip already-seen batches (faster, not reproducible)."
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed, set before the model is built.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory by recomputing activations.")
    auto_find_batch_size: bool = Field(
        False, description="Halve the batch size on out-of-memory and retry."
    )

    @model_validator(mode="wrap")
    @classmethod
    def _rename_aliases(cls, data: Any, handler: ModelWrapValidatorHandler["TrainingSpec"]) -> "TrainingSpec":
        return validate_with_aliases(cls.__name__, data, handler)


class PreferenceSpec(SpecModel):
    """Preference training (objective 'dpo' or 'orpo') through TRL's DPOTrainer and ORPOTrainer."""

    beta: float = Field(
        0.1, gt=0, le=100,
        description="DPO: how far the model may move from the reference (higher stays closer); ORPO: the "
        "weight of the odds-ratio term.",
    )
    loss_type: DpoLossType = Field("sigmoid", description="DPO loss (TRL's loss_type): sigmoid is the DPO paper's, "
                                   "ipo, hinge, robust and others are variants. Objective 'dpo' only.")
    max_prompt_length: int | None = Field(
        None, ge=1, le=131072,
        description="Keep only the last N tokens of each prompt (the answers keep theirs, up to "
        "data.cutoff_len in all); default the whole prompt.",
    )
    reference: Literal["model", "precomputed"] = Field(
        "model",
        description="DPO's reference model: 'model' computes its log-probs at every step (LoRA: the base "
        "with the adapter disabled, or the starting adapter with init_from_job_id; full fine-tuning: a frozen "
        "copy of the weights); 'precomputed' computes them once before training (no copy in memory). "
        "ORPO needs no reference.",
    )


class ResumeFrom(SpecModel):
    job_id: int = Field(ge=1, le=MAX_ID, description="Earlier job whose checkpoint starts this one.")
    step: int | None = Field(None, ge=1, le=MAX_STEP, description="Checkpoint step; default the latest usable one.")


class ResourcesSpec(SpecModel):
    gpus: int = Field(
        1, ge=1, le=64,
        description="GPUs the job needs, on one worker: N > 1 runs N data-parallel processes under torchrun.",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="How N processes share the work: ddp keeps a full copy of the model on each GPU; fsdp "
        "shards weights, gradients and optimizer state over them (method 'full' only, NVIDIA GPUs).",
    )
    queue: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
        description="Worker queue the job is routed to; default the server's default queue.",
    )
    max_restarts: int = Field(
        2, ge=0, le=100, description="Automatic resumes after a lost worker before the job fails."
    )
    gpu_memory_gb: float | None = Field(
        None, gt=0, le=100000,
        description="Memory of one GPU of the queue, in GB, if known: POST /jobs/validate then "
        "suggests changes when the memory estimate exceeds it. Not enforced.",
    )


GENERATION_METRICS = ("exact_match", "rouge_l", "bleu")
GenerationMetric = Literal[GENERATION_METRICS]  # type: ignore[valid-type]


class SampleMessage(SpecModel):
    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(max_length=20000, description="What is said.")


class EvaluationSpec(SpecModel):
    """What the model generates while it trains: at each evaluation and at the end of training,
    greedy outputs for sample prompts and validation rows, and generation metrics on the validation
    set (one GPU only)."""

    sample_prompts: list[
        Annotated[str, Field(min_length=1, max_length=20000)] | Annotated[list[SampleMessage], Field(max_length=64)]
    ] = Field(
        default_factory=list, max_length=16,
        description="Prompts to generate from at each evaluation and at the end: a text, or chat messages. "
        "Built into a prompt exactly as the job builds its training examples.",
    )
    samples_from_validation: int = Field(
        0, ge=0, le=64,
        description="Also generate for the first N validation rows, stored with their reference answers.",
    )
    generation_metrics: list[GenerationMetric] = Field(
        default_factory=list, max_length=len(GENERATION_METRICS),
        description="Metrics of greedy generations against the references of the first generation_max_rows "
        "validation rows, logged as eval_<name>: exact_match (0-1), rouge_l (ROUGE-L F1, 0-1), bleu "
        "(sacrebleu corpus BLEU, 0-100).",
    )
    generation_max_rows: int = Field(
        64, ge=1, le=10000,
        description="Validation rows the generation metrics are computed on (the first ones, in split order).",
    )
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Most tokens generated per prompt (eos stops earlier).")
    max_generation_s: float = Field(
        300, gt=0, le=86400,
        description="Time bound of one generation round, in seconds: prompts not begun by then are skipped "
        "(the round's event says how many were generated).",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.sample_prompts or self.samples_from_validation or self.generation_metrics)

    @field_validator("sample_prompts")
    @classmethod
    def _no_empty_conversation(cls, prompts: list) -> list:
        for prompt in prompts:
            if isinstance(prompt, list) and not any(message.role == "user" for message in prompt):
                raise PydanticCustomError(
                    "no_user_message", "a sample prompt given as messages needs at least one user message")
        return prompts


class JobSpec(SpecModel):
    name: str | None = Field(None, max_length=255, description="Free-form name of the job.")
    base_model: str = Field(
        min_length=1, max_length=1024,
        description="Hub id (org/name) or a folder inside one of the server's model roots.",
    )
    dataset_id: int = Field(ge=1, le=MAX_ID, description="Id of an uploaded dataset.")
    validation_dataset_id: int | None = Field(
        None, ge=1, le=MAX_ID,
        description="Id of an uploaded dataset whose rows are the evaluation set (instead of data.val_set_size).",
    )
    data: DataSpec = Field(default_factory=DataSpec, description="How the dataset becomes examples.")
    method: Literal["lora", "qlora", "full"] = Field(
        "lora", description="LoRA adapters, QLoRA (LoRA adapters on a 4-bit NF4 base; needs a CUDA GPU with "
        "bitsandbytes, and bf16 or fp16 as compute precision) or full fine-tuning.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA settings (methods 'lora' and 'qlora').")
    objective: Literal["sft", "dpo", "orpo"] = Field(
        "sft", description="What the job learns: 'sft' (supervised fine-tuning on answers), 'dpo' or 'orpo' "
        "(preference training on chosen and rejected answers; needs a preference dataset).")
    preference: PreferenceSpec = Field(
        default_factory=PreferenceSpec, description="Preference training settings (objective 'dpo' or 'orpo').")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Trainer hyperparameters.")
    output_dir: str | None = Field(
        None, min_length=1, max_length=200,
        description="Relative folder name under the server's job outputs; default job-<id>.",
    )
    resume_from_checkpoint: ResumeFrom | None = Field(
        None, description="Start from a checkpoint of an earlier job (by job id and step, never a path)."
    )
    init_from_job_id: int | None = Field(
        None, ge=1, le=MAX_ID,
        description="A succeeded job of yours whose final model this job starts from: LoRA keeps training its "
        "adapter, full fine-tuning starts from its weights. base_model, method and lora must be that job's.",
    )
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with the model; refused unless the server allows it."
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Where and how the job runs.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec,
        description="Sample generations and generation metrics while the job trains; default none.",
    )

    @field_validator("resume_from_checkpoint", mode="before")
    @classmethod
    def _no_checkpoint_path(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise PydanticCustomError(
                "checkpoint_path_refused",
                'resume_from_checkpoint takes an earlier job, {"job_id": 12, "step": 500} (step optional), '
                "never a path",
            )
        return value
