"""The REST API. Never imports torch, transformers or peft: it starts fast on machines without GPUs."""
