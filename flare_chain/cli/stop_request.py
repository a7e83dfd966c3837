"""A stop request (SIGTERM, SIGINT) recorded from the CLI's first statement, before anything heavy is imported.

Service managers send SIGTERM whenever they like, including during the first
second of a process, while Python still imports torch, transformers and web3.
Python's default SIGTERM action kills the process at once (exit 143, no log
line), so the CLI arms this handler before it builds its parser: the handler
only records which signal came and sets an event. A command that can stop
cleanly (``node run``) keeps the request and honours it when it gets there;
every other command gets the default behaviour back, with a signal that came
meanwhile delivered again, so nothing else changes for it.

This module imports only ``signal`` (``threading`` and ``typing`` would add
5-10 ms on a loaded machine; the event is made on first use): the window in
which a signal still meets Python's default action is the interpreter's own
start-up (``site`` and its ``.pth`` files) plus the package's two ``__init__``
files and this module. It holds no module-level state:
the one ``StopRequest`` lives in ``flare_chain.cli.main.main`` and is handed
to the command.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

if False:  # for the type checker only; importing typing/threading here costs start-up time
    import threading

__all__ = ["STOP_SIGNALS", "StopRequest"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that ask a flare-chain process to stop."""


class StopRequest:
    """Records SIGTERM/SIGINT into ``event`` while armed; ``disarm`` puts the previous handlers back.

    Arming works only in the main thread (Python's rule for signal handlers);
    elsewhere ``arm`` does nothing and returns False, so the CLI called from a
    worker thread behaves as before.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        """Name of the first stop signal received (``"SIGTERM"``), None while none came."""
        self._event: threading.Event | None = None
        # what signal.signal returned: a Python handler, SIG_DFL/SIG_IGN, or None (installed outside Python)
        self._previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
        self._announce: Callable[[str], None] | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    @property
    def event(self) -> threading.Event:
        """Set once a stop signal came (also one that came before this was first read); a daemon waits on it."""
        if self._event is None:
            import threading

            self._event = threading.Event()
            if self.signal_name is not None:  # after the assignment: a signal from now on sets it itself
                self._event.set()
        return self._event

    def arm(self) -> bool:
        """Install the recording handler for SIGTERM and SIGINT; False when not on the main thread."""
        try:
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # "signal only works in main thread of the main interpreter"
            self.disarm(redeliver=False)
            return False
        return True

    def announce_with(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(signal name)`` for every stop signal from now on (a log line, once logging is set up)."""
        self._announce = callback

    def disarm(self, *, redeliver: bool) -> None:
        """Restore the handlers found by ``arm``.

        ``redeliver``: a command that does not honour the request gets a
        signal received while armed raised again under the restored handler
        (SIGTERM then ends the process as it always did, SIGINT raises
        KeyboardInterrupt), so arming early changes nothing for it.
        """
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if redeliver and previous and self.signal_name is not None:
            signal.raise_signal(signal.Signals[self.signal_name])

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is None:
            self.signal_name = name
        if self._event is not None:
            self._event.set()
        if self._announce is not None:
            self._announce(name)
