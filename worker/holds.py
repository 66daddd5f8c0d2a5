"""A test hook: hold a process at a named point of a run, so that a test can act (send a stop) at
exactly that moment. Light (no torch): the training process calls it before its heavy imports.

Off unless TRAINDOCK_TEST_HOLD_DIR names a folder. A test arms a point by creating `<point>.arm`
in it; the first process to reach the point takes the arm (one hold per arm), writes
`<point>.reached` (its pid) and waits until `<point>.release` exists. Signals are handled while
it waits."""

import os
import time
from pathlib import Path

HOLD_DIR_ENV = "TRAINDOCK_TEST_HOLD_DIR"
POLL_S = 0.02


def hold(point: str) -> None:
    folder = os.environ.get(HOLD_DIR_ENV)
    if not folder:
        return
    armed = Path(folder) / f"{point}.arm"
    try:
        armed.rename(armed.with_suffix(".taken"))  # atomic: of several processes, one holds
    except FileNotFoundError:
        return
    (Path(folder) / f"{point}.reached").write_text(str(os.getpid()))
    while not (Path(folder) / f"{point}.release").exists():
        time.sleep(POLL_S)
