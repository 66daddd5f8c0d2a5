"""traindock: self-hosted REST service for LLM fine-tuning jobs. The shared kernel both sides import
(settings, paths, broker, filesystem transport, webhook signing and URLs) lives here; the command
line is the `traindock.cli` subpackage, which nothing the services run imports."""
