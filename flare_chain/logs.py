"""Logging set-up for the CLI: one plain line per event, or JSON lines on request."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import TextIO

__all__ = ["configure_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, sort_keys=True)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream it was when set up.

    A handler bound to the stderr of the moment outlives it when the stream is
    swapped and closed (an embedding program, or a test's captured stderr), and
    every later record then ends in a "--- Logging error ---" traceback.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:  # the StreamHandler attribute, read at each emit
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:  # StreamHandler.__init__ assigns it; always follow sys.stderr
        pass


def configure_logging(level: str = "INFO", *, json_lines: bool = False, log_file: Path | None = None) -> None:
    """Route flare-chain's loggers to stderr (and ``log_file``, appended); quiet the chatty libraries underneath.

    The file gets the same lines as stderr, with the date in each plain line
    (a service's log outlives the day it started); ConfigError when the file
    cannot be opened, before anything else happens.
    """
    handler = _CurrentStderrHandler()
    handlers: list[logging.Handler] = [handler]
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"))
    if log_file is not None:
        from flare_chain.errors import ConfigError

        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"log file {log_file} cannot be opened for appending: {exc.strerror}; "
                              "choose a writable --log-file") from None
        file_handler.setFormatter(_JsonFormatter() if json_lines else logging.Formatter(
            "%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
        handlers.append(file_handler)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(logging.WARNING)
    logging.getLogger("flare_chain").setLevel(level.upper())
    # Library deprecation chatter is for library authors, not node operators.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    for noisy in ("web3", "eth", "urllib3", "httpx", "transformers", "peft"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
