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


def test_a_folder_kept_here_is_fetched_again_when_the_store_has_another(s3, tmp_path):
    """A checkpoint rewritten elsewhere (a replaced timeline), or a final model of a resumed job:
    the copy here is brought up to date file by file; what matches (by ETag, multipart included) is
    not downloaded again, and files the store no longer has are removed."""
    folder = s3.root / "jobs" / "tenant-1" / "job-1" / "checkpoint-4"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"a" * 3000)
    (folder / "big.bin").write_bytes(b"b" * (17 << 20))  # above the multipart threshold: a "-2" ETag
    (folder / "extra.bin").write_text("old")
    (folder / "trainer_state.json").write_text('{"step": 4}')
    location = s3.put_dir(folder, last="trainer_state.json")
    assert [e.etag.strip('"').endswith("-2") for e in s3.entries(location)] == [True, False, False, False]

    other = S3Store(f"s3://{s3.bucket}/pre", tmp_path / "machine-b", retry_s=2)
    kept = other.fetch_dir(location)
    inodes = {p.name: p.stat().st_ino for p in kept.iterdir()}
    assert (kept / "model.safetensors").read_bytes() == b"a" * 3000

    # Elsewhere, the same step of another timeline: same sizes, other weights, one file fewer.
    (folder / "model.safetensors").write_bytes(b"c" * 3000)
    (folder / "trainer_state.json").write_text('{"step": 5}')
    (folder / "extra.bin").unlink()
    s3.delete(f"{location}/extra.bin")
    s3.put_dir(folder, last="trainer_state.json")
    assert other.fetch_dir(location) == kept
    assert (kept / "model.safetensors").read_bytes() == b"c" * 3000
    assert (kept / "trainer_state.json").read_text() == '{"step": 5}' and not (kept / "extra.bin").exists()
    assert (kept / "big.bin").stat().st_ino == inodes["big.bin"]  # matched its multipart ETag: kept

    # A copy this machine wrote itself (no record of a listing) is kept when it matches.
    again = S3Store(f"s3://{s3.bucket}/pre", s3.root, retry_s=2)
    before = {p.name: p.stat().st_ino for p in folder.iterdir()}
    again.fetch_dir(location)
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == before


def test_fetches_of_one_file_write_partial_files_of_their_own(s3, tmp_path, monkeypatch):
    """Two processes filling one cache file must never write into the same partial file."""
    staged = s3.root / "datasets" / "8.jsonl"
    staged.parent.mkdir(parents=True)
    staged.write_text('{"text": "a"}\n')
    location = s3.put_file(staged)
    partials = []
    download = s3.client.download_file

    def recorded(bucket, key, filename, **kwargs):
        partials.append(filename)
        return download(bucket, key, filename, **kwargs)

    monkeypatch.setattr(s3.client, "download_file", recorded)
    cache = tmp_path / "cache" / "x.jsonl"
    s3.fetch_file(location, cache)
    s3.fetch_file(location, cache)
    assert len(set(partials)) == 2 and cache.read_text() == '{"text": "a"}\n'
    assert sorted(p.name for p in cache.parent.iterdir()) == ["x.jsonl"]


def test_a_read_stopped_early_closes_the_response(s3, monkeypatch):
    staged = s3.root / "logs" / "job-1" / "attempt-1.log"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"x" * (3 << 20))
    location = s3.put_file(staged)
    closed = []
    get_object = s3.client.get_object

    def answered(**kwargs):
        answer = get_object(**kwargs)
        body = answer["Body"]
        original = body.close
        body.close = lambda: (closed.append(True), original())
        return answer

    monkeypatch.setattr(s3.client, "get_object", answered)
    chunks = s3.chunks(location)
    assert len(next(chunks)) > 0 and closed == []
    chunks.close()  # the client went away mid-download
    assert closed == [True]


def test_an_object_store_failure_is_a_503_with_retry_after(client, monkeypatch):
    import api.dataset_upload
    from tests.integration.conftest import ALPACA_ROWS, jsonl

    class Away(LocalStore):
        def put_file(self, path, move=False, patient=True):
            assert not patient  # one try: the upload's transaction holds the tenant's lock
            raise StorageUnavailable("s3://bucket is unreachable")

    store = api.dataset_upload.get_store()
    monkeypatch.setattr(api.dataset_upload, "get_store", lambda: Away(store.root))
    response = client.post("/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5", response.text
    assert client.get("/datasets").json()["items"] == []
    response = client.post("/v1/files", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}, data={"purpose": "fine-tune"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5", response.text
    assert response.json()["error"]["code"] == "storage_unavailable"


def test_the_content_of_a_file_missing_from_the_store_is_a_404(client, dataset):
    from api.openai_compat import ids
    from db.engine import session_scope
    from db.models import Dataset
    from traindock.storage import get_store

    file_id = ids.encode(ids.FILE, dataset["id"])
    assert client.get(f"/v1/files/{file_id}/content").status_code == 200
    with session_scope() as session:
        get_store().delete(session.get(Dataset, dataset["id"]).path)  # removed from the store by hand
    response = client.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_with_an_object_store_a_recorded_checkpoint_is_usable_without_asking_the_store(client, dataset, monkeypatch):
    """usable_checkpoint runs under the job's row lock: no request to the store there."""
    import db.checkpoints
    from db.checkpoints import record_checkpoint, usable_checkpoint
    from db.engine import session_scope
    from db.runs import latest_run
    from tests.integration.conftest import make_spec

    class Remote:
        copies = True

        def exists(self, location):
            raise AssertionError("asked the store under the job's lock")

    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    assert client.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    monkeypatch.setattr(db.checkpoints, "get_store", lambda: Remote())
    with session_scope() as session:
        run_id = latest_run(session, job["id"]).id
        record_checkpoint(session, job["id"], run_id, 4, "jobs/tenant-1/x/checkpoint-4", None)
    with session_scope() as session:
        assert usable_checkpoint(session, job["id"]).step == 4
