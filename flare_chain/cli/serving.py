"""Run a blocking server in the foreground until Ctrl-C or SIGTERM, then close it.

Both ``flare-chain chain serve`` and ``flare-chain ipfs serve`` are stopped by
devnet scripts with SIGTERM; turning the signal into ``KeyboardInterrupt``
unwinds ``serve_forever`` in the main thread the same way Ctrl-C does, so
there is one shutdown path and the previous handler is always restored.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

__all__ = ["serve_until_stopped"]


def serve_until_stopped(serve_forever: Callable[[], None], close: Callable[[], None]) -> None:
    """Call ``serve_forever`` until SIGTERM or Ctrl-C, then ``close``, whatever happened."""

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        close()
