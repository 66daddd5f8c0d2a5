"""The same DPO job as traindock runs, as a plain TRL script: transformers' model, peft's LoraConfig,
TRL's DPOConfig and DPOTrainer, nothing of traindock's. Prints the Trainer's final metrics and the
peak memory as JSON on its last line.

    python bench/bare_dpo.py SPEC.json PAIRS.jsonl MODEL_DIR OUTPUT_DIR
"""

import json
import resource
import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer


def main(spec_path: str, pairs_path: str, model_dir: str, output_dir: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    training, lora = spec["training"], spec.get("lora", {})
    rows = [json.loads(line) for line in Path(pairs_path).read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    args = DPOConfig(
        output_dir=output_dir, max_steps=training["max_steps"],
        per_device_train_batch_size=training["per_device_train_batch_size"], learning_rate=training["learning_rate"],
        optim=training["optim"], logging_steps=training["logging_steps"], save_strategy="no",
        bf16=training.get("bf16", False), gradient_checkpointing=False, report_to="none", seed=42,
        beta=spec.get("preference", {}).get("beta", 0.1), max_length=spec["data"]["cutoff_len"],
        include_num_input_tokens_seen="non_padding", disable_tqdm=True,
    )
    peft_config = LoraConfig(r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16),
                             lora_dropout=lora.get("dropout", 0.05), target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config)
    metrics = trainer.train().metrics
    metrics["num_input_tokens_seen"] = trainer.state.num_input_tokens_seen
    metrics["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    metrics["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(metrics))


if __name__ == "__main__":
    main(*sys.argv[1:5])
