"""The one place settings are read. Every setting has the TRAINDOCK_ prefix."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINDOCK_", extra="ignore")

    data_dir: Path = Field(
        Path(".traindock"),
        description="Data root: SQLite database, broker folder, datasets and job outputs.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: SQLite at <data_dir>/traindock.db."
    )
    broker_url: str | None = Field(
        None, description="Celery broker URL. Default: filesystem broker in <data_dir>/broker."
    )
    model_roots: list[Path] | None = Field(
        None, description="Folders local base models may be loaded from. Default: <data_dir>/models."
    )
    api_key: SecretStr | None = Field(
        None, description="Key the CLI's client commands send; default the one `traindock up` saved."
    )
    api_url: str = Field(
        "http://127.0.0.1:8000", description="Where the CLI's client commands find the API."
    )
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="Largest dataset upload accepted.")
    max_line_bytes: int = Field(1024 * 1024, description="Longest JSONL line of a dataset.")
    max_dataset_rows: int = Field(10_000_000, description="Most rows in one dataset.")
    max_request_bytes: int = Field(
        1024 * 1024, description="Largest request body, uploads excepted (they have max_upload_bytes)."
    )
    max_queued_jobs_per_tenant: int = Field(100, description="Queued jobs one tenant may have at once.")
    allow_trust_remote_code: bool = Field(
        False, description="Let specs set trust_remote_code (runs code shipped with a model)."
    )
    hub_token: SecretStr | None = Field(
        None, description="Hugging Face Hub token, given to training processes; never stored or shown."
    )
    default_queue: str = Field("gpu", description="Queue a job goes to when its spec names none.")
    heartbeat_interval_s: float = Field(5.0, description="How often a running job's heartbeat is written.")
    heartbeat_timeout_s: float = Field(
        60.0, description="A running attempt whose heartbeat is older than this is interrupted and restarted."
    )
    recovery_interval_s: float = Field(
        10.0, description="How often workers look for lost attempts and for runs never sent to the broker."
    )
    redispatch_after_s: float = Field(
        30.0, description="A queued run whose broker message has not gone out after this long, or that the "
        "broker lost this long after its last send, is sent again."
    )
    cancel_grace_s: float = Field(
        60.0, description="How long a cancelled job may take to checkpoint and exit before it is killed."
    )
    db_retry_s: float = Field(
        120.0, description="How long workers and training processes ride out an unreachable database before "
        "the attempt ends (error database_unavailable, handed back without using a restart).",
    )
    drain_timeout_s: float = Field(
        120.0, description="On SIGTERM, how long a worker lets its training process checkpoint and stop before "
        "killing it; the job is handed back to the queue either way.",
    )
    gpus: str | None = Field(
        None, description="Comma-separated GPU ids this worker's jobs may use (`traindock worker --gpus` sets it); "
        "default the NVIDIA GPUs the machine has, or CUDA_VISIBLE_DEVICES when set.",
    )
    warm_start: bool = Field(
        True, description="Keep a spare training process with its imports done for the next one-GPU job "
        "(costs the memory of one idle interpreter with torch loaded per worker process).",
    )
    hub_namespaces: dict[str, str] = Field(
        default_factory=dict, description="Tenant name -> the Hub namespace its hub_model_id must fall under; "
        "the key '*' applies to every other tenant and may use '{tenant}'. A tenant with none cannot name a Hub repo.",
    )
    admin_tenants: list[str] = Field(
        default_factory=list, description="Tenants whose keys see the whole worker registry (GET /workers: "
        "hosts, running jobs); every other tenant sees each queue's capacity only.",
    )
    broker_polling_interval_s: float = Field(
        0.1, description="Filesystem broker polling interval (embedded backend only)."
    )
    api_key_cache_s: float = Field(
        5.0, ge=0, description="How long the API trusts a verified key without asking the database: "
        "a revoked key is refused at most this long after its revocation (0: every request asks)."
    )
    api_threads: int = Field(
        16, ge=1, le=1000, description="Requests one API process works on at once (its thread pool)."
    )
    db_pool_size: int | None = Field(
        None, ge=1, description="Database connections each process keeps (PostgreSQL; 4 more may open "
        "briefly). Default: api_threads, one per request in progress."
    )

    training_threads: int | None = Field(
        None, ge=1, le=1024, description="CPU threads of a training process (torch.set_num_threads); default "
        "torch's, one per core. `traindock up` leaves the inference server's TRAINDOCK_INFERENCE_THREADS out."
    )
    inference_memory_gb: float = Field(
        8.0, gt=0, description="Memory an inference server (`traindock serve`) may fill with loaded models; the "
        "least recently used are unloaded beyond it (one model is always kept, however large)."
    )
    inference_threads: int = Field(
        1, ge=1, le=256, description="CPU threads an inference server's generation uses (torch.set_num_threads): "
        "keeps it from taking the cores a training job on the same machine needs."
    )
    inference_max_tokens: int = Field(
        2048, ge=1, le=131072, description="Largest max_tokens a completion request may ask for."
    )
    inference_max_waiting: int = Field(
        16, ge=0, le=10000, description="Requests an inference server lets wait for its model while one "
        "generates; beyond them a request is refused at once (503, retried by the openai client)."
    )
    inference_queue_timeout_s: float = Field(
        60.0, gt=0, description="Longest a request waits for an inference server before it is refused (503)."
    )
    inference_token: SecretStr | None = Field(
        None, description="Shared secret the API sends to inference servers and they require (set it when "
        "an inference server listens on an address others can reach)."
    )

    storage_url: str | None = Field(
        None, pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", description="Where datasets, "
        "checkpoints, final models and logs are kept: unset for the data folder (one machine, or a shared disk), or "
        "`s3://bucket/prefix` for an S3-compatible store reached with the standard AWS_* variables "
        "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)."
    )
    storage_retry_s: float = Field(
        300.0, gt=0, description="How long a transfer to or from the store is retried (with backoff) while the "
        "store is unreachable; a checkpoint not uploaded by then fails the attempt (storage_unavailable)."
    )
    storage_log_interval_s: float = Field(
        10.0, gt=0, description="How often a running attempt's log is uploaded to the store (S3 only)."
    )

    webhook_allow_private_urls: bool = Field(
        False, description="Let webhook endpoints use http:// and loopback, private or link-local addresses "
        "(local testing only: a tenant could otherwise reach the service's own network)."
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Longest a webhook delivery may take, connecting (at most 3 s) included."
    )
    webhook_retry_base_s: float = Field(
        10.0, gt=0, description="Delay after a webhook delivery's first failed attempt; it doubles after each "
        "further failure, up to 1440 times this (4 hours by default)."
    )
    webhook_retry_for_s: float = Field(
        86400.0, gt=0, description="How long a webhook delivery is retried before it is given up."
    )

    def hub_namespace(self, tenant: str) -> str | None:
        pattern = self.hub_namespaces.get(tenant, self.hub_namespaces.get("*"))
        return pattern.replace("{tenant}", tenant) if pattern else None

    @property
    def root(self) -> Path:
        return self.data_dir.resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.root / 'traindock.db'}"

    @property
    def effective_db_pool_size(self) -> int:
        return self.db_pool_size or self.api_threads

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")

    @property
    def broker_folder(self) -> Path:
        return self.root / "broker"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def effective_model_roots(self) -> list[Path]:
        return [p.resolve() for p in (self.model_roots or [self.root / "models"])]

    def ensure_dirs(self) -> None:
        for path in (self.root, self.datasets_dir, self.jobs_dir, *self.effective_model_roots):
            path.mkdir(parents=True, exist_ok=True)
        if self.uses_filesystem_broker:
            for sub in ("queue", "processed", "control"):
                (self.broker_folder / sub).mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
