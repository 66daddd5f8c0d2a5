"""docker-compose.yml and the Dockerfiles cannot be started here; check what can be read."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_runs_postgres_redis_minio_api_a_gpu_worker_and_an_inference_server():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "minio", "minio-bucket", "api", "worker", "inference"}
    assert services["inference"]["command"][:2] == ["traindock", "serve"]
    for name in ("api", "worker", "inference"):
        env = services[name]["environment"]
        assert env["TRAINDOCK_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["TRAINDOCK_DATABASE_URL"]
        assert env["TRAINDOCK_BROKER_URL"].startswith("redis://redis:6379")
        # datasets, checkpoints, models and logs go through the store, which the bucket job makes
        assert env["TRAINDOCK_STORAGE_URL"] == "s3://traindock/data" and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert "mc mb --ignore-existing store/traindock" in services["minio-bucket"]["entrypoint"][-1]
    # No data volume shared: each service could be on a machine of its own (base models are
    # read-only, and each machine has its copy).
    for name in ("api", "worker", "inference"):
        assert all(volume.endswith(":ro") for volume in services[name].get("volumes", [])), name
    [device] = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert set(compose()["volumes"]) >= {"minio-data"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)


def test_images_build_from_files_that_exist():
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for dockerfile in ("Dockerfile.api", "Dockerfile.worker"):
        text = (REPO / dockerfile).read_text()
        for source in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
            for path in source.split():
                assert (REPO / path).exists(), (dockerfile, path)
        copied = set(re.findall(r"^COPY (\w+) ", text, flags=re.M))
        assert {p.split(".")[0] for p in packages} <= copied, dockerfile
    for name, service in compose()["services"].items():
        if "build" in service:
            assert (REPO / service["build"]["dockerfile"]).exists()


def test_api_image_has_no_training_libraries():
    api = (REPO / "Dockerfile.api").read_text()
    assert "pip install --no-cache-dir -e ." in api
    assert "torch" not in api and "[worker]" not in api
    worker = (REPO / "Dockerfile.worker").read_text()
    assert "torch==" in worker and '".[worker,gpu]"' in worker  # gpu: bitsandbytes, for method qlora
