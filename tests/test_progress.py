"""Progress off a terminal: one log line per tenth of the work, never a duplicate."""

from __future__ import annotations

import logging

import pytest

from flare_chain.progress import progress


@pytest.mark.parametrize("total", [1, 7, 10, 64, 300, 1001])
def test_log_progress_reports_each_tenth_once(total: int, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("flare_chain.test_progress")
    with caplog.at_level(logging.INFO, logger=logger.name), progress("work", total, logger=logger) as bar:
        for _ in range(total):
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == min(total, 10)
    assert len(set(lines)) == len(lines)
    assert lines[-1].startswith(f"work: {total}/{total}")


def test_disabled_progress_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("flare_chain.test_progress")
    with caplog.at_level(logging.INFO, logger=logger.name), progress("quiet", 5, logger=logger,
                                                                      enabled=False) as bar:
        bar.update(5)
    assert caplog.records == []
