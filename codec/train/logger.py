"""What a training run reports: a rich progress bar or plain lines, and TensorBoard.

Only the main process logs. The bar (on a terminal) shows the step, loss, step/s and
ETA; without a terminal (a job log, CI) the same figures go out as one line every
`log_every` steps. TensorBoard scalars and audio go to `OUT/tensorboard` when the
`tensorboard` package is installed (`pip install codec[train]`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainLogger:
    """Progress, console lines and TensorBoard for the main process (silent elsewhere).

    Args:
        out_dir: the run folder; TensorBoard events go to `out_dir/tensorboard`.
        total_steps, start_step: for the bar and the ETA.
        enabled: False on every process but the main one.
        tensorboard: write TensorBoard events when the package is available.
        console: where the bar and lines go (stderr by default).
        log: also receives every line (e.g. to append to a log file).
    """

    def __init__(
        self,
        out_dir: Path,
        total_steps: int,
        start_step: int,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        console: Console | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.log = log
        self.writer = None
        self._recent: deque[tuple[float, int]] = deque([(time.monotonic(), start_step)], maxlen=50)
        self._bar: Progress | None = None
        if not enabled:
            return
        if tensorboard:
            self.writer = _summary_writer(out_dir / "tensorboard")
            if self.writer is None:
                self.line("tensorboard is not installed (pip install codec[train]): no events")
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task(
                "train", total=total_steps, completed=start_step, stats=""
            )
            self._bar.start()

    def line(self, text: str) -> None:
        """A message above the bar (or a plain line)."""
        if not self.enabled:
            return
        self.console.print(text, highlight=False, soft_wrap=True)
        if self.log:
            self.log(text)

    def steps_per_second(self) -> float:
        """Training speed over the last 50 steps (validation and checkpoints included)."""
        (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)

    def progress(self, step: int, loss: float) -> None:
        """Advance the bar to `step` with the latest loss."""
        self._recent.append((time.monotonic(), step))
        if self._bar is not None:
            rate = self.steps_per_second()
            self._bar.update(self._task, completed=step, stats=f"loss {loss:.4f} {rate:.2f} step/s")

    def set_total(self, total_steps: int) -> None:
        """The run's length changed (a wall-clock budget was fitted)."""
        if self._bar is not None:
            self._bar.update(self._task, total=total_steps)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def audio(self, step: int, tag: str, wav: np.ndarray, sample_rate: int) -> None:
        if self.writer is not None:
            self.writer.add_audio(tag, np.clip(wav, -1, 1)[None], step, sample_rate=sample_rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        return None
    return SummaryWriter(str(path))
