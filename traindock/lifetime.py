"""Child processes that never outlive their parent."""

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL):
    """A preexec_fn (Linux): the child gets `signum` when the process that started it dies, for
    whatever reason, so no orphan keeps running (or holding a GPU)."""

    def set_parent_death_signal() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)

    return set_parent_death_signal
