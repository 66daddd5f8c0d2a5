"""The OpenAI-compatible layer (/v1): the `openai` client's files, fine_tuning.jobs and models
calls, answered by the same services as the native API."""
