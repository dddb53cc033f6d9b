"""Progress of a long loop (training, evaluation, a command over many files), readable where it is read.

On a terminal: a tqdm bar. In a log file or CI, where every redraw of a bar would be kept as text: a line
every few seconds and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")

# Often enough to see a run is alive, rarely enough that a log of an hour's training stays short.
LINE_EVERY_S = 10.0


class Progress:
    """Counts steps of `desc` in `unit`s toward `total` (None: unknown), shown as a bar or as log lines."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        initial: int = 0,
        enabled: bool = True,
        stream: IO[str] | None = None,
        line_every_s: float = LINE_EVERY_S,
        position: int = 0,
    ) -> None:
        """`position`: the bar's line on a terminal (0 first), so that nested loops each keep a bar."""
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.total, self.desc, self.unit, self.count = total, desc, unit, initial
        self.postfix = ""
        self.line_every_s = line_every_s
        self._bar = None
        if enabled and self.stream.isatty():
            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, file=self.stream, position=position, leave=True
            )
        self._started = self._last_line = time.monotonic()
        self._start_count = initial

    def update(self, steps: int = 1) -> None:
        self.count += steps
        if self._bar is not None:
            self._bar.update(steps)
        elif self.enabled and time.monotonic() - self._last_line >= self.line_every_s:
            self._write_line()

    def set_total(self, total: int) -> None:
        """The count to reach, once it is known (frames in a bag, after opening it)."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def set_postfix(self, **values: object) -> None:
        """Values shown after the count (a running loss, a learning rate)."""
        self.postfix = ", ".join(f"{name}={value}" for name, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._write_line()
        self.enabled = False  # a second close writes nothing

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write_line(self) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        done = f"{self.count}/{self.total}" if self.total is not None else str(self.count)
        rate = (self.count - self._start_count) / elapsed if elapsed > 0 else 0.0
        line = f"{self.desc}: {done} {self.unit}s, {elapsed:.0f} s, {rate:.2f} {self.unit}/s"
        print(f"{line}, {self.postfix}" if self.postfix else line, file=self.stream, flush=True)
        self._last_line = now


def progress(
    items: Sequence[Item], desc: str, unit: str, enabled: bool = True, stream: IO[str] | None = None
) -> Iterator[Item]:
    """`items`, each counted once the loop is done with it (see Progress)."""
    with Progress(len(items), desc, unit, enabled=enabled, stream=stream) as shown:
        for item in items:
            yield item
            shown.update()
