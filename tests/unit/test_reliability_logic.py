"""Pure logic of riding out faults: which errors are retried and for how long, a full disk's code,
metric points kept when a report is deferred, and finding a worker's pool processes."""

import errno
import os
import subprocess
import sys

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from db.retry import DatabaseUnavailable, backoff_delays, is_transient, retrying
from worker.drain import child_pids
from worker.errors import classify


def test_connection_errors_are_retried_and_constraint_violations_are_not():
    assert is_transient(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError())


def test_backoff_doubles_is_capped_and_stays_within_the_bound():
    delays = list(backoff_delays(10, first_s=0.5, max_s=2))
    assert delays[:4] == [0.5, 1, 2, 2] and sum(delays) == 10


def test_retrying_gives_up_after_the_bound_and_never_retries_other_errors():
    calls = []

    def unreachable():
        calls.append(1)
        raise OperationalError("SELECT 1", {}, Exception("the database system is shutting down"))

    with pytest.raises(DatabaseUnavailable):
        retrying(unreachable, 0.3, "test")
    assert len(calls) > 1

    def broken():
        calls.append(2)
        raise IntegrityError("INSERT", {}, Exception("duplicate"))

    with pytest.raises(IntegrityError):
        retrying(broken, 5, "test")
    assert calls.count(2) == 1


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
])
def test_a_full_disk_has_its_own_code_and_advice(exc):
    error = classify(exc)
    assert error["code"] == "disk_full" and "save_total_limit" in error["advice"]


def test_a_deferred_report_keeps_its_points_and_later_values_win():
    from worker.callback import ReportingCallback

    callback = ReportingCallback(reporter=None, stop=None)
    callback.pending = {3: (0.3, {"loss": 2.0})}
    callback.put_back([(2, 0.2, {"loss": 1.0}), (3, 0.3, {"loss": 9.0, "grad_norm": 1.0})])
    assert callback.take_points() == [(2, 0.2, {"loss": 1.0}), (3, 0.3, {"loss": 2.0, "grad_norm": 1.0})]


def test_child_pids_finds_the_processes_a_worker_started():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in child_pids(os.getpid())
    finally:
        child.kill()
        child.wait()
