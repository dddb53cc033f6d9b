"""The demo's log lines: `demo: ...` on stdout, and banners on stderr for what must not be missed."""

from __future__ import annotations

import sys


def shout(lines: list[str]) -> None:
    bar = "!" * 78
    print("\n".join([bar, *(f"!!  {line}" for line in lines), bar]), file=sys.stderr, flush=True)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)
