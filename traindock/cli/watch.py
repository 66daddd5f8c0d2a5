"""`traindock watch`: a job followed live from its stream. On a terminal: a redrawn view with a
progress bar, speed, elapsed time, ETA, the latest losses and a loss chart; piped: one plain line
per update."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.text import Text

from traindock.cli.sse import StreamEvent

BLOCKS = "▁▂▃▄▅▆▇█"
CHART_WIDTH = 60


def sparkline(values: list[float], width: int = CHART_WIDTH) -> str:
    """The last `width` values as unicode blocks, lowest to highest."""
    values = values[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(BLOCKS[round((value - low) / span * (len(BLOCKS) - 1))] for value in values)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class JobView:
    """What the stream has told so far about one job."""

    job_id: int
    status: str = "?"
    progress: dict = field(default_factory=dict)
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss (a resume replaces steps)
    eval_loss: float | None = None
    started_at: datetime | None = None
    message: str = ""

    def apply(self, event: StreamEvent) -> bool:
        """Take in one event; True when what is shown changed."""
        if event.type == "status":
            self.status, self.message = event.data["status"], event.data.get("message", "")
            if self.status == "running" and self.started_at is None and event.data.get("at"):
                self.started_at = datetime.fromisoformat(event.data["at"])
            return True
        if event.type == "progress":
            self.progress = event.data
            return True
        if event.type == "metrics":
            for point in event.data["points"]:
                if point["name"] == "loss":
                    self.losses[point["step"]] = point["value"]
                elif point["name"] == "eval_loss":
                    self.eval_loss = point["value"]
            return False
        return False

    @property
    def loss(self) -> float | None:
        return self.losses[max(self.losses)] if self.losses else None

    def elapsed(self) -> float | None:
        return (datetime.now(timezone.utc) - self.started_at).total_seconds() if self.started_at else None

    def numbers(self) -> str:
        p = self.progress
        parts = [f"job {self.job_id} {self.status}"]
        if p.get("phase"):
            parts.append(str(p["phase"]))
        parts.append(f"step {p.get('step', 0)}/{p.get('max_steps') or '?'}")
        if p.get("steps_per_second"):
            parts.append(f"{p['steps_per_second']:.2f} it/s")
        parts.append(f"elapsed {duration(self.elapsed())}")
        if p.get("eta_seconds") is not None and self.status == "running":
            parts.append(f"ETA {duration(p['eta_seconds'])}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.eval_loss is not None:
            parts.append(f"eval_loss {self.eval_loss:.4f}")
        return "  ".join(parts)

    def render(self) -> Group:
        total = self.progress.get("max_steps") or None
        bar = ProgressBar(total=total, completed=self.progress.get("step", 0), width=CHART_WIDTH)
        chart = sparkline([self.losses[step] for step in sorted(self.losses)])
        lines = [Text(self.numbers()), bar]
        if chart:
            lines.append(Text(f"loss {chart}", style="cyan"))
        return Group(*lines)


def show(events: Iterable[StreamEvent], view: JobView, console: Console) -> JobView:
    """Follow the events until they end; redraw on a terminal, else print a line per change."""
    if not console.is_terminal:
        last = None
        for event in events:
            if view.apply(event) and (line := view.numbers()) != last:
                console.print(line, highlight=False, soft_wrap=True)
                last = line
        return view
    with Live(view.render(), console=console, refresh_per_second=4, transient=False) as live:
        for event in events:
            view.apply(event)
            live.update(view.render())
    return view
