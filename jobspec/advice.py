"""Tuning advice from the parameter document's tips (and a few transformers defaults worth knowing).

Advice never rejects a spec: each item is {"field": "training.learning_rate", "level": "warning" or
"info", "msg": ...}. The document's ranges are for LLM fine-tuning on one 24 GB GPU and are typical
values, not limits.
"""

from jobspec.model import GENERATION_METRICS, JobSpec


def _item(field: str, msg: str, level: str = "warning") -> dict:
    return {"field": field, "level": level, "msg": msg}


def _learning_rate(spec: JobSpec) -> list[dict]:
    lr = spec.training.learning_rate
    if 1e-5 <= lr <= 1e-4:
        return []
    msg = f"learning_rate {lr:g} is outside 1e-5..1e-4, the usual range for fine-tuning an LLM"
    if lr < 1e-5:
        msg += "; too small a rate may under-train"
    elif spec.method in ("lora", "qlora") and lr <= 5e-4:
        msg += "; LoRA adapters are often trained a little higher (around 2e-4), so this may be fine"
    else:
        msg += "; too large a rate can make training unstable"
    return [_item("training.learning_rate", msg)]


def _batch(spec: JobSpec) -> list[dict]:
    t, gpus = spec.training, spec.resources.gpus
    effective = t.per_device_train_batch_size * t.gradient_accumulation_steps * gpus
    items = []
    if not 32 <= effective <= 128:
        items.append(_item(
            "training.per_device_train_batch_size",
            f"effective batch size {effective} (per_device_train_batch_size x gradient_accumulation_steps "
            "x gpus) is outside the typical 32..128",
            "info",
        ))
    if t.gradient_accumulation_steps > 8:
        items.append(_item(
            "training.gradient_accumulation_steps",
            f"gradient_accumulation_steps {t.gradient_accumulation_steps} is above the typical 1..8: "
            "updates get rare; raise per_device_train_batch_size instead if memory allows",
        ))
    return items


def _schedule(spec: JobSpec) -> list[dict]:
    t = spec.training
    items = []
    if t.max_steps <= 0 and t.num_train_epochs > 30:
        items.append(_item(
            "training.num_train_epochs",
            f"num_train_epochs {t.num_train_epochs:g} is above the typical 10..30: the model may overfit "
            "and the run takes long",
        ))
    if t.warmup_steps == 0:
        items.append(_item(
            "training.warmup_steps",
            "no warm-up: a warm-up over 0.1..0.2 of training (warmup_steps 0.1) stabilises early training",
            "info",
        ))
    elif t.warmup_steps < 1 and not 0.1 <= t.warmup_steps <= 0.2:
        items.append(_item(
            "training.warmup_steps",
            f"warm-up over {t.warmup_steps:g} of training; the typical share is 0.1..0.2",
            "info",
        ))
    if t.max_grad_norm == 0:
        items.append(_item("training.max_grad_norm", "max_grad_norm 0 disables gradient clipping"))
    elif not 1.0 <= t.max_grad_norm <= 2.0:
        items.append(_item(
            "training.max_grad_norm",
            f"max_grad_norm {t.max_grad_norm:g} is outside the typical 1.0..2.0 for gradient clipping",
            "info",
        ))
    return items


def _run(spec: JobSpec) -> list[dict]:
    t = spec.training
    items = []
    if t.ignore_data_skip:
        items.append(_item(
            "training.ignore_data_skip",
            "ignore_data_skip: a resumed run starts faster but sees the data in another order, so it "
            "will not reproduce an uninterrupted run",
            "info",
        ))
    if t.fp16:
        items.append(_item(
            "training.fp16",
            "fp16 can overflow on LLMs trained in bf16; prefer bf16 on Ampere or newer GPUs",
            "info",
        ))
    if spec.data.val_set_size > 0 and t.eval_strategy == "no":
        items.append(_item(
            "training.eval_strategy",
            "data.val_set_size holds rows out, but eval_strategy 'no' never evaluates on them",
        ))
    if t.save_strategy == "no" and spec.resources.max_restarts > 0:
        items.append(_item(
            "training.save_strategy",
            "save_strategy 'no' writes no checkpoints, so a job whose worker is lost restarts from scratch",
        ))
    uses_metric = (t.load_best_model_at_end or t.save_strategy == "best"
                   or t.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy"))
    metric = t.metric_for_best_model
    if metric is not None and not uses_metric:
        items.append(_item(
            "training.metric_for_best_model",
            "metric_for_best_model is unused without load_best_model_at_end, save_strategy 'best' or "
            "a plateau/greedy schedule",
            "info",
        ))
    elif (metric is not None and t.greater_is_better is None and not metric.endswith("loss")
          and metric.removeprefix("eval_") not in GENERATION_METRICS):  # larger is better for those
        items.append(_item(
            "training.greater_is_better",
            f"greater_is_better is unset, so transformers treats a larger '{metric}' as better (only "
            "names ending in 'loss' count as lower-is-better); set it if that is wrong",
            "info",
        ))
    return items


def tuning_warnings(spec: JobSpec) -> list[dict]:
    """Advice on a valid spec; never a reason to refuse it."""
    return [*_learning_rate(spec), *_batch(spec), *_schedule(spec), *_run(spec)]
