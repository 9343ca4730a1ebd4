"""The one progress helper: what reaches a log file when there is no terminal."""

import logging

import pytest

from histolatent.progress import log_to_file, progress


def test_progress_reaches_the_log_file_with_counts_rate_and_fields(tmp_path):
    log = tmp_path / "logs" / "job.log"
    with log_to_file(log), progress(4, "tiles", enabled=False, log_every_s=0.0) as bar:
        for i in range(4):
            bar.advance(1, loss=1.0 / (i + 1))
    text = log.read_text()
    assert "tiles: 1/4 items (25 %)" in text
    assert "tiles: 4/4 items (100 %)" in text and " in " in text.splitlines()[-1]
    assert "loss=0.25" in text.splitlines()[-1]
    assert "ETA" in text.splitlines()[0]
    assert bar.done == 4


def test_a_failure_is_logged_and_the_handler_removed(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(RuntimeError), log_to_file(log), progress(10, "slides", enabled=False) as bar:
        bar.advance(3)
        raise RuntimeError("boom")
    assert "slides: stopped at 3/10 items (30 %) (RuntimeError)" in log.read_text()
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("histolatent").handlers)


def test_resumed_job_counts_from_its_start_and_rate_excludes_earlier_work(tmp_path):
    with progress(100, "steps", enabled=False, start=90, unit="steps") as bar:
        bar.advance(5)
    assert bar.done == 95
    assert bar.rate > 0 and 0 < bar.eta_s() < float("inf")
