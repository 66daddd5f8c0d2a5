"""Where a training process's start-up time goes, for the job's result (`startup`) and
bench/startup.py: marks on the monotonic clock, from the interpreter's start to the end of the
first optimizer step, turned into seconds per phase."""

import time
from datetime import datetime, timedelta, timezone

PHASES = ("imports", "data", "model", "trainer", "first_step")


class StartupClock:
    def __init__(self, started: float, warm: bool = False):
        self.started = started  # time.monotonic() as the process began (a spare: as it got its job)
        self.warm = warm  # a spare (worker/warm.py): its imports were done before the job came
        # The same instant on the wall clock.
        self.started_at = datetime.now(timezone.utc) - timedelta(seconds=time.monotonic() - started)
        self.marks: dict[str, float] = {}

    def mark(self, phase: str, at: float | None = None) -> None:
        """`phase` ended now (or at `at`, a monotonic time)."""
        self.marks[phase] = time.monotonic() if at is None else at

    def split(self) -> dict:
        """{"process_started_at", "imports_s", "data_s", "model_s", "trainer_s", "first_step_s"}:
        each phase from the end of the one before; a phase not reached is None."""
        split: dict = {"process_started_at": self.started_at.isoformat(), "warm": self.warm}
        previous = self.started
        for phase in PHASES:
            end = self.marks.get(phase)
            split[f"{phase}_s"] = None if end is None else round(end - previous, 3)
            previous = end if end is not None else previous
        return split
