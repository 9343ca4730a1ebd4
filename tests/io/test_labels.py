"""Label tables are checked where they enter: every bad row is an error naming the file."""

from __future__ import annotations

import pandas as pd
import pytest

from histolatent.errors import InputError
from histolatent.io.labels import read_slide_labels


def _csv(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_and_parquet_read_the_same(tmp_path):
    csv = _csv(tmp_path, "slide_id,label,split\n007,1,train\nB,0,val\n")
    a = read_slide_labels(csv, task="binary")
    assert a["slide_id"].tolist() == ["007", "B"]  # ids stay strings: no 007 -> 7
    assert a["label"].dtype == "float64" and a["split"].tolist() == ["train", "val"]
    pq = tmp_path / "labels.parquet"
    pd.DataFrame({"slide_id": ["007", "B"], "label": [True, False]}).to_parquet(pq)
    assert read_slide_labels(pq, task="binary")["label"].tolist() == [1.0, 0.0]
    assert read_slide_labels(_csv(tmp_path, "slide_id,label\nA,0.37\n"), task="regression")["label"].tolist() == [0.37]


@pytest.mark.parametrize(("text", "task", "match"), [
    ("slide,label\nA,1\n", None, r"missing column\(s\) \['slide_id'\]"),
    ("slide_id,label\nA,1\nA,0\n", None, r"\['A'\] appear more than once"),
    ("slide_id,label\nA,tumour\nB,0\n", None, "must be numbers.*tumour"),
    ("slide_id,label\nA,\nB,0\n", None, r"non-finite label for slide\(s\) \['A'\]"),
    ("slide_id,label\nA,0.5\nB,1\n", "binary", r"binary.*\['A'\]"),
])
def test_bad_tables_are_errors_naming_the_file_and_the_row(tmp_path, text, task, match):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError, match=match) as err:
        read_slide_labels(path, task=task)
    assert "labels.csv" in str(err.value)


def test_missing_or_foreign_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_slide_labels(tmp_path / "none.csv")
    with pytest.raises(InputError, match=r"\.csv, \.tsv or \.parquet"):
        read_slide_labels(_csv(tmp_path, "x", name="labels.xlsx"))
    with pytest.raises(InputError, match="not a readable table"):
        read_slide_labels(_csv(tmp_path, "garbage", name="labels.parquet"))
