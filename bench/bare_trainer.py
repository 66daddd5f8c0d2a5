"""The same job as traindock runs, as a bare Trainer script: no database, no callback, no
supervisor. Builds the examples and model with the worker's own functions so that only the
service's overhead differs. Prints the Trainer's final metrics as JSON on its last line.

    python bench/bare_trainer.py SPEC.json DATASET.jsonl FORMAT OUTPUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, set_seed

from jobspec import JobSpec, training_arguments
from traindock.settings import get_settings
from worker.data import PaddingCollator, build_datasets
from worker.model import load_model, load_tokenizer, model_source, prepare_for_training


def main(spec_path: str, dataset_path: str, fmt: str, output_dir: str) -> None:
    spec = JobSpec.model_validate(json.loads(Path(spec_path).read_text()))
    source = model_source(spec.base_model, get_settings().effective_model_roots)
    tokenizer = load_tokenizer(source, spec.base_model)
    train_set, eval_set = build_datasets(Path(dataset_path), fmt, tokenizer, spec.data, spec.training.seed)
    set_seed(spec.training.seed)
    model = prepare_for_training(load_model(source, spec.base_model, spec), spec)
    # The service counts tokens the same way (worker/train.py).
    args = TrainingArguments(**training_arguments(spec, output_dir), include_num_input_tokens_seen="non_padding")
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=PaddingCollator(tokenizer.pad_token_id), processing_class=tokenizer)
    metrics = trainer.train().metrics
    trainer.save_model(str(Path(output_dir) / "final"))
    metrics["num_input_tokens_seen"] = trainer.state.num_input_tokens_seen
    metrics["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    print(json.dumps(metrics))


if __name__ == "__main__":
    main(*sys.argv[1:5])
