"""io.cohort.run_tasks: rows in task order, a task that raises becomes a failed row, same rows on Dask."""

from __future__ import annotations

import pytest

from histolatent.errors import InputError
from histolatent.io.cohort import run_tasks, summary_table, write_summary


def square(n: int) -> dict:
    if n == 3:
        raise ValueError("three is corrupt")
    return {"slide_id": f"s{n}", "status": "done", "value": n * n}


@pytest.mark.parametrize("scheduler", ["inline", None])
def test_a_raising_task_is_a_failed_row_and_the_others_finish(scheduler):
    tasks = [(f"s{n}", {"n": n}) for n in (4, 3, 1)]
    rows = run_tasks(square, tasks, scheduler=scheduler, n_workers=2, processes=False, progress=False)
    assert [r["slide_id"] for r in rows] == ["s4", "s3", "s1"]
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert rows[1]["error"] == "ValueError: three is corrupt" and rows[2]["value"] == 1


def test_duplicate_ids_are_refused_and_the_summary_is_written(tmp_path):
    with pytest.raises(InputError, match="unique"):
        run_tasks(square, [("a", {"n": 1}), ("a", {"n": 2})], scheduler="inline")
    rows = [{"slide_id": "b", "status": "failed", "error": "x" * 100}, {"slide_id": "a", "status": "done"}]
    df = write_summary(rows, tmp_path, table_columns=["slide_id", "status", "error"])
    assert df.slide_id.tolist() == ["a", "b"]
    table = (tmp_path / "summary.txt").read_text().splitlines()
    assert table[0].split() == ["slide_id", "status", "error"] and table[2].startswith("a ")
    assert table[3].rstrip().endswith("...") and len(table[3]) < 100
    assert summary_table([]) == "(no slides)\n"
