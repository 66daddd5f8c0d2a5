"""The package surface: exports, JSON schema, and no heavy imports."""

import subprocess
import sys

import jobspec


def test_exports():
    for name in ("JobSpec", "DataSpec", "LoraSpec", "TrainingSpec", "ResumeFrom", "ResourcesSpec", "spec_problems",
                 "explain_unknown_fields", "tuning_warnings", "estimate", "split_sizes", "training_arguments",
                 "job_spec_json_schema", "memory_estimate", "apply_resume_overrides", "RESUME_OVERRIDABLE_FIELDS"):
        assert name in jobspec.__all__ and hasattr(jobspec, name)


def test_import_pulls_in_no_heavy_package():
    code = ("import jobspec, sys; heavy = {m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'transformers', 'peft', 'sqlalchemy', 'fastapi', 'accelerate', 'celery'}; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_json_schema_documents_the_aliases():
    schema = jobspec.job_spec_json_schema()
    training = schema["$defs"]["TrainingSpec"]
    assert training["x-aliases"] == {
        "evaluation_strategy": "eval_strategy", "optimizer": "optim", "lr_scheduler": "lr_scheduler_type",
        "micro_batch_size": "per_device_train_batch_size", "warmup_ratio": "warmup_steps",
    }
    assert "save_safetensors" in training["description"]
    assert training["additionalProperties"] is False
    assert set(schema["properties"]) == set(jobspec.JobSpec.model_fields)
    assert "alias evaluation_strategy" in training["properties"]["eval_strategy"]["description"]
