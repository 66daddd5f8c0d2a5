"""A spare training process's own output (worker/warm.py): it opens the attempt's log when the
spare takes its run, and goes into that log when the spare ended before it took the run; the
run's error then quotes the log's last line (worker/supervisor.py)."""

import os
from types import SimpleNamespace

from worker import warm
from worker.supervisor import _crash_message

TRACEBACK = ('Traceback (most recent call last):\n  File "/x/peft/__init__.py", line 1, in <module>\n'
             "ImportError: peft is broken\n")


def test_a_spare_that_took_its_run_hands_its_earlier_output_to_the_attempts_log(tmp_path, monkeypatch):
    own = tmp_path / "spare-1.log"
    own.write_text("a warning while importing\n")
    monkeypatch.setenv(warm.OUTPUT_ENV, str(own))
    attempt_log = tmp_path / "attempt-1.log"
    descriptor = os.open(attempt_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        warm._hand_own_output_to(descriptor)
        os.write(descriptor, b"training\n")
    finally:
        os.close(descriptor)
    assert attempt_log.read_text() == "a warning while importing\ntraining\n"
    assert not own.exists() and warm.OUTPUT_ENV not in os.environ
    # The supervisor, after the process ended, finds nothing left to add.
    warm.keep_output(SimpleNamespace(pid=7, spare_output=own), attempt_log)
    assert attempt_log.read_text() == "a warning while importing\ntraining\n"


def test_a_spare_that_ended_before_it_took_its_run_leaves_its_output_to_the_attempts_log(tmp_path):
    own = tmp_path / "spare-1.log"
    own.write_text(TRACEBACK)
    attempt_log = tmp_path / "attempt-1.log"
    warm.keep_output(SimpleNamespace(pid=7, spare_output=own), attempt_log)
    assert attempt_log.read_text().endswith(TRACEBACK) and "spare training process 7" in attempt_log.read_text()
    assert not own.exists()
    assert _crash_message(1, attempt_log) == "the training process exited with code 1: ImportError: peft is broken"


def test_a_fresh_process_has_no_spare_output_and_a_crash_without_a_log_says_the_code(tmp_path):
    attempt_log = tmp_path / "attempt-1.log"
    warm.keep_output(SimpleNamespace(pid=7), attempt_log)
    assert not attempt_log.exists()
    assert _crash_message(2, attempt_log) == "the training process exited with code 2"
    assert _crash_message(-9, attempt_log) == "the training process was killed by SIGKILL"
