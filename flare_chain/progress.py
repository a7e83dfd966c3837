"""Progress reporting that suits where the output goes.

On a terminal, long work (training, uploads, rounds) shows a tqdm bar; anywhere
else (CI logs, files, pipes) it emits plain log lines at most every ~10% so the
log stays readable. Callers never check for a TTY themselves.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["Progress", "progress"]


class Progress(Protocol):
    def update(self, n: int = 1, **postfix: object) -> None: ...


class _LogProgress:
    """Log a line each time another tenth of the work is done."""

    def __init__(self, logger: logging.Logger, desc: str, total: int, unit: str) -> None:
        self._logger = logger
        self._desc = desc
        self._total = max(total, 1)
        self._unit = unit
        self._done = 0
        self._reported_tenths = 0  # integer tenths already logged: no float drift, no double lines

    def update(self, n: int = 1, **postfix: object) -> None:
        self._done += n
        tenths = min(10, self._done * 10 // self._total)
        if tenths > self._reported_tenths:
            self._reported_tenths = tenths
            extra = " ".join(f"{k}={v}" for k, v in postfix.items())
            self._logger.info(
                "%s: %d/%d %s (%.0f%%)%s",
                self._desc, self._done, self._total, self._unit, 100 * min(self._done / self._total, 1.0),
                f" {extra}" if extra else "",
            )


class _BarProgress:
    def __init__(self, desc: str, total: int, unit: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: object) -> None:
        if postfix:
            self._bar.set_postfix({k: str(v) for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


@contextmanager
def progress(desc: str, total: int, *, unit: str = "it", logger: logging.Logger | None = None,
             enabled: bool = True) -> Iterator[Progress]:
    """Yield a progress sink: a tqdm bar on a TTY, periodic log lines otherwise.

    ``enabled=False`` yields a sink that reports nothing (for nested or tiny work).
    """
    log = logger or logging.getLogger("flare_chain.progress")
    if not enabled:
        yield _Silent()
        return
    if sys.stderr.isatty():
        bar = _BarProgress(desc, total, unit)
        try:
            yield bar
        finally:
            bar.close()
    else:
        yield _LogProgress(log, desc, total, unit)


class _Silent:
    def update(self, n: int = 1, **postfix: object) -> None:
        return None
