"""A nuclei cohort on a 2-worker LocalCluster survives a worker process killed mid-task: the
slide is redone elsewhere, and every output equals a clean run's, with no temporary left.

The cohort code is io/cohort.py's (run_tasks + write_summary), which the NIC compression
cohorts share.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from histolatent.io.atomic import write_image_atomic
from histolatent.io.tables import read_cell_table
from histolatent.nuclei.files import segment_nuclei
from histolatent.synth import render_tile


def _outputs(folder):
    files = sorted(p.name for p in folder.iterdir())
    tables = {p.name: read_cell_table(p) for p in sorted(folder.glob("*.parquet"))}
    geojson = {p.name: p.read_text() for p in sorted(folder.glob("*.geojson"))}
    return files, tables, geojson


def test_a_killed_worker_s_slide_is_redone_and_the_cohort_equals_a_clean_run(tmp_path):
    from distributed import Client, LocalCluster
    from tests.nuclei._kill_worker import KillOnce

    rois = tmp_path / "rois"
    for i in range(3):
        write_image_atomic(rois / f"roi{i}.png", render_tile(96, mpp=0.5, seed=20 + i, tissue="lymphoid").rgb)
    clean = segment_nuclei(rois, tmp_path / "clean", slide_mpp=0.5, scheduler="inline", progress=False)
    assert (clean.status == "done").all() and (clean.n_nuclei > 0).all()

    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(KillOnce(str(marker)))
        lost = segment_nuclei(rois, tmp_path / "lost", slide_mpp=0.5, scheduler=cluster.scheduler_address,
                              progress=False)
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert (lost.status == "done").all(), lost[["slide_id", "status", "error"]]
    cols = ["slide_id", "status", "n_nuclei", "mna_um2", "sdna_um2"]
    pd.testing.assert_frame_equal(lost[cols], clean[cols])
    files, tables, geojson = _outputs(tmp_path / "lost")
    files_c, tables_c, geojson_c = _outputs(tmp_path / "clean")
    assert files == files_c  # no temporary of the dead worker left
    assert geojson == geojson_c
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, tables_c[name])


def test_the_summary_removes_what_a_dead_writer_left_and_keeps_a_live_one(tmp_path):
    from histolatent.io.atomic import _host, atomic_path
    from histolatent.io.cohort import write_summary

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # that process has exited
    stale_file = tmp_path / f".s1.parquet.{_host()}-{pid}.abcd1234.tmp.parquet"
    stale_dir = tmp_path / f".s2.zarr.{_host()}-{pid}.abcd1234.tmp"
    stale_file.write_text("half")
    stale_dir.mkdir()
    with atomic_path(tmp_path / "s3.parquet") as live:
        live.write_text("in progress")
        write_summary([{"slide_id": "s1", "status": "done"}], tmp_path)
        assert live.exists()
    assert not stale_file.exists() and not stale_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3.parquet", "summary.csv", "summary.txt"]
