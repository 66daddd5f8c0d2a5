"""Jobs on several GPUs without starting any: the spec rules and TrainingArguments, placement on a
worker's GPU set, and how the ranks' exit codes become the attempt's outcome."""

import signal

import pytest

from jobspec import JobSpec, spec_problems
from jobspec.training_args import training_arguments
from traindock.paths import rank_exit_path, rank_log_path
from worker.errors import EXIT_DATABASE_UNAVAILABLE, EXIT_FAILED, EXIT_STOPPED
from worker.placement import NotEnoughGpus, job_gpu_ids, parse_gpu_ids
from worker.ranks import EXIT_PEER_LOST, how_ranks_ended, training_command


def spec(method="lora", **resources) -> JobSpec:
    return JobSpec.model_validate({"base_model": "m", "dataset_id": 1, "method": method, "resources": resources})


def test_fsdp_is_for_full_fine_tuning():
    [problem] = spec_problems(spec(gpus=2, strategy="fsdp"))
    assert problem["loc"] == ("resources", "strategy") and "method to 'full'" in problem["msg"]
    assert spec_problems(spec("full", gpus=2, strategy="fsdp")) == []
    assert spec_problems(spec(gpus=2)) == []


def test_training_arguments_of_several_gpus():
    assert "ddp_find_unused_parameters" not in training_arguments(spec(), "out")
    assert training_arguments(spec(gpus=2), "out")["ddp_find_unused_parameters"] is False
    fsdp = training_arguments(spec("full", gpus=2, strategy="fsdp"), "out")
    assert fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_config"]["version"] == 2


def test_one_gpu_runs_one_process_and_more_run_under_torchrun(tmp_path):
    log = tmp_path / "attempt-2.log"
    assert training_command(7, 1, log)[1:] == ["-m", "worker.train", "--run-id", "7"]
    command = training_command(7, 4, log)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m"]
    assert command[6:] == ["worker.train", "--run-id", "7", "--attempt-log", str(log)]
    assert rank_log_path(log, 3).name == "attempt-2.rank-3.log"


def test_a_job_gets_the_first_gpus_of_the_worker_set():
    assert parse_gpu_ids("4, 2,7") == ["4", "2", "7"]
    assert job_gpu_ids(["4", "2", "7"], 2, "w") == ["4", "2"]
    assert job_gpu_ids([], 1, "w") == []  # a CPU worker runs one-process jobs as ever
    with pytest.raises(NotEnoughGpus, match=r"needs 4 GPUs \(resources.gpus\) and worker w has 2 \(0,1\)"):
        job_gpu_ids(["0", "1"], 4, "w")
    with pytest.raises(NotEnoughGpus, match="has none"):
        job_gpu_ids([], 2, "w")


@pytest.mark.parametrize("text", ["0,,1", "0,0", "0, 1 2"])
def test_bad_gpu_sets_are_refused(text):
    with pytest.raises(ValueError):
        parse_gpu_ids(text)


def ended(tmp_path, codes: dict[int, int], launcher_code: int = 1, launcher_log: str = ""):
    log = tmp_path / "attempt-1.log"
    log.write_text(launcher_log)
    for rank, code in codes.items():
        rank_exit_path(log, rank).write_text(str(code))
    return how_ranks_ended(launcher_code, 2, log)


def test_the_failing_rank_decides_and_its_log_explains(tmp_path):
    outcome = ended(tmp_path, {0: EXIT_PEER_LOST, 1: EXIT_FAILED})
    assert (outcome.code, outcome.log_path.name, outcome.crash) == (EXIT_FAILED, "attempt-1.rank-1.log", None)


def test_ranks_that_all_stopped_stopped(tmp_path):
    assert ended(tmp_path, {0: EXIT_STOPPED, 1: EXIT_STOPPED}).code == EXIT_STOPPED
    assert ended(tmp_path, {0: EXIT_STOPPED, 1: EXIT_DATABASE_UNAVAILABLE}).code == EXIT_DATABASE_UNAVAILABLE


def test_a_rank_without_an_exit_code_crashed(tmp_path):
    report = "Root Cause (first observed failure):\n  rank      : 1\n  exitcode  : -9 (pid: 77)\n"
    outcome = ended(tmp_path, {0: EXIT_PEER_LOST}, launcher_log=report)
    assert outcome.code == -signal.SIGKILL and outcome.log_path.name == "attempt-1.rank-1.log"
    assert outcome.crash == "training process rank 1 of 2 was killed by SIGKILL; torchrun stopped the others"


def test_a_failure_outranks_a_crash(tmp_path):
    # The rank without an exit code may be the one torchrun ended after the other failed.
    assert ended(tmp_path, {0: EXIT_FAILED}).code == EXIT_FAILED


def test_success_and_a_killed_launcher_pass_through(tmp_path):
    assert ended(tmp_path, {}, launcher_code=0).code == 0
    assert ended(tmp_path, {}, launcher_code=-9).code == -9


def test_the_worker_command_refuses_a_malformed_gpu_set_in_one_line(capsys):
    from traindock.cli import app
    from traindock.cli.failures import run_cli

    assert run_cli(app, ["worker", "--gpus", "0,,1"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for --gpus: GPU ids must be comma-separated" in err and "Traceback" not in err
