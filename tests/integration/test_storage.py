"""The store's one interface (traindock/storage.py) on both backends: the local data folder, which
copies nothing, and an S3 bucket on a real S3-protocol server (moto's, in its own process)."""

import io
import tarfile
import uuid

import pytest

from api.archive import stored_tar_stream
from tests.e2e.object_store import free_port, s3_client, start_moto
from traindock.storage import LocalStore, S3Store, StorageRefused, StorageUnavailable


@pytest.fixture(scope="module")
def endpoint():
    moto = start_moto(port := free_port())
    yield f"http://127.0.0.1:{port}"
    moto.terminate()
    moto.wait()


@pytest.fixture
def s3(endpoint, tmp_path, monkeypatch):
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    bucket = f"t-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return S3Store(f"s3://{bucket}/pre", tmp_path / "machine-a", retry_s=2)


def test_the_local_store_is_the_data_folder_and_copies_nothing(tmp_path):
    store = LocalStore(tmp_path)
    folder = tmp_path / "jobs" / "x" / "checkpoint-2"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    location = store.put_dir(folder)
    assert store.fetch_dir(location) == folder and store.put_file(folder / "trainer_state.json", move=True)
    assert (folder / "trainer_state.json").exists()  # nothing moved, nothing copied
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoint-2", "jobs", "trainer_state.json", "x"]
    store.delete(str(tmp_path / "jobs"))
    assert not store.exists(location)


def test_files_and_folders_round_trip_through_a_bucket(s3, tmp_path):
    folder = s3.root / "jobs" / "tenant-1" / "job-1" / "checkpoint-4"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 3000)
    (folder / "sub" / "x.txt").write_text("x")
    (folder / "trainer_state.json").write_text("{}")
    location = s3.put_dir(folder, last="trainer_state.json")
    assert location == "jobs/tenant-1/job-1/checkpoint-4"
    assert [e.name for e in s3.entries(location)] == ["model.safetensors", "sub/x.txt", "trainer_state.json"]
    assert s3.exists(f"{location}/trainer_state.json") and not s3.exists(f"{location}/missing")

    other = S3Store(f"s3://{s3.bucket}/pre", tmp_path / "machine-b", retry_s=2)  # another machine
    fetched = other.fetch_dir(location)
    assert fetched == tmp_path / "machine-b" / location
    assert (fetched / "model.safetensors").read_bytes() == b"w" * 3000 and (fetched / "sub" / "x.txt").read_text() == "x"
    assert b"".join(other.chunks(f"{location}/model.safetensors", offset=2990)) == b"w" * 10
    assert b"".join(other.chunks(f"{location}/model.safetensors", offset=5000)) == b""
    with pytest.raises(FileNotFoundError):
        other.chunks(f"{location}/missing")

    with tarfile.open(fileobj=io.BytesIO(b"".join(stored_tar_stream(other, location, "ckpt")))) as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()} == {
            "ckpt/model.safetensors": b"w" * 3000, "ckpt/sub/x.txt": b"x", "ckpt/trainer_state.json": b"{}"}

    other.delete("jobs/tenant-1/job-1")
    assert s3.entries("jobs") == []


def test_a_dataset_moved_into_the_bucket_leaves_no_copy_and_a_cache_is_reused(s3, tmp_path):
    staged = s3.root / "datasets" / "7.jsonl"
    staged.parent.mkdir(parents=True)
    staged.write_text('{"text": "a"}\n')
    location = s3.put_file(staged, move=True)
    assert location == "datasets/7.jsonl" and not staged.exists()
    cache = tmp_path / "cache" / "abc.jsonl"
    assert s3.fetch_file(location, cache, reuse=True).read_text() == '{"text": "a"}\n'
    cache.write_text("kept")
    assert s3.fetch_file(location, cache, reuse=True).read_text() == "kept"  # no second download


def test_a_missing_bucket_is_refused_and_an_unreachable_store_given_up_after_its_retries(s3, tmp_path, monkeypatch):
    with pytest.raises(StorageRefused, match="NoSuchBucket"):
        S3Store("s3://no-such-bucket/x", tmp_path, retry_s=1).check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    away = S3Store(f"s3://{s3.bucket}/pre", tmp_path, retry_s=1.5)
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageUnavailable, match="uploading f"):
        away.put_file(tmp_path / "f")
