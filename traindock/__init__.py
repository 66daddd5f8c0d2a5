"""traindock: self-hosted REST service for LLM fine-tuning jobs (settings and CLI live here)."""
