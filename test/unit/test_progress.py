"""Progress in a log file or CI: lines every few seconds, never a bar's redraws; a bar on a terminal only."""

from __future__ import annotations

import errno
import io
import os
import pty

from clipseg_ros.engine.progress import Progress, progress


def test_off_a_terminal_a_line_every_few_seconds_and_one_at_the_end():
    log = io.StringIO()
    with Progress(1000, "train", "step", stream=log) as shown:
        for _ in range(1000):
            shown.update()
            shown.set_postfix(loss="0.1234")
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    # The loop took far less than LINE_EVERY_S: the closing line only.
    [line] = log.getvalue().splitlines()
    assert line.startswith("train: 1000/1000 steps, ") and line.endswith("step/s, loss=0.1234"), line


def test_off_a_terminal_a_line_per_interval():
    log = io.StringIO()
    shown = Progress(5, "train", "step", initial=2, stream=log, line_every_s=0.0)
    for _ in range(3):
        shown.update()
    shown.close()
    shown.close()
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "train: 3/5 steps", "train: 4/5 steps", "train: 5/5 steps", "train: 5/5 steps"]


def test_a_loop_over_items_counts_them_and_disabled_writes_nothing():
    log = io.StringIO()
    assert list(progress(["a.png", "b.png"], "eval", "image", stream=log)) == ["a.png", "b.png"]
    assert log.getvalue().startswith("eval: 2/2 images, ") and log.getvalue().count("\n") == 1
    quiet = io.StringIO()
    assert list(progress([1, 2, 3], "eval", "image", enabled=False, stream=quiet)) == [1, 2, 3]
    with Progress(3, "train", "step", enabled=False, stream=quiet, line_every_s=0.0) as shown:
        shown.update(3)
    assert quiet.getvalue() == ""


def _read_all(controller: int) -> str:
    """A pty hands its output back in pieces; Linux answers EIO once the closed terminal's last byte is read."""
    pieces = []
    try:
        while piece := os.read(controller, 4096):
            pieces.append(piece)
    except OSError as error:
        if error.errno != errno.EIO:
            raise
    finally:
        os.close(controller)
    return b"".join(pieces).decode()


def test_on_a_terminal_a_bar():
    controller, terminal = pty.openpty()
    with open(terminal, "w") as stream:
        assert list(progress(range(3), "eval", "image", stream=stream)) == [0, 1, 2]
    shown = _read_all(controller)
    assert "\r" in shown and "eval: 100%" in shown and "3/3" in shown
