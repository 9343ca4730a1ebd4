"""Cell tables round-trip through Parquet; GeoJSON is a valid FeatureCollection QuPath can read;
MoNuSeg XML and label images become instance maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from histolatent.errors import InputError
from histolatent.io.annotations import read_annotated_folder, read_label_image, read_monuseg_xml
from histolatent.io.geojson import read_geojson_polygons
from histolatent.io.geojson_export import (
    geojson_from_cells,
    validate_feature_collection,
    write_geojson,
)
from histolatent.io.tables import read_cell_table, with_physical_coordinates, write_cell_table


def _cells() -> pd.DataFrame:
    square = np.array([10, 10, 14, 10, 14, 14, 10, 14, 10, 10], dtype=np.float64)  # closed, 5 vertices
    tri = np.array([30, 30, 36, 30, 33, 35, 30, 30], dtype=np.float64)
    t = pd.DataFrame({"x": [12.0, 33.0], "y": [12.0, 31.5], "cell_id": [0, 1],
                      "area_um2": [4.0, np.nan], "classification": ["tumour", "lymphocyte"],
                      "polygon": [square, tri]})
    return with_physical_coordinates(t, slide_id="s1", mpp=0.25)


def test_cell_table_round_trip(tmp_path):
    cells = _cells()
    before = cells.copy()
    path = write_cell_table(cells, tmp_path / "c.parquet", metadata={"method": "watershed", "mpp": 0.25})
    pd.testing.assert_frame_equal(cells.drop(columns="polygon"), before.drop(columns="polygon"))  # unmodified
    back = read_cell_table(path)
    pd.testing.assert_frame_equal(back.drop(columns="polygon"), cells.drop(columns="polygon"), check_dtype=False)
    for a, b in zip(back.polygon, cells.polygon, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.attrs["histolatent"]["method"] == "watershed"
    assert back.x_um.tolist() == [3.0, 8.25] and back.y_um.tolist() == [3.0, 7.875]  # (x, y) * 0.25
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_cell_table_attrs_survive_merge_and_concatenation(tmp_path):
    from histolatent.io.tables import cell_table_metadata, concat_parquet

    cells = _cells()
    cells.attrs["histolatent"] = {"method": "log", "params": {"radius_um": [3.0, 7.0]}, "level0_dimensions": [640, 480]}
    path = write_cell_table(cells, tmp_path / "c.parquet", metadata={"method": "watershed", "source": "a.svs"})
    want = {"method": "watershed", "params": {"radius_um": [3.0, 7.0]}, "level0_dimensions": [640, 480],
            "source": "a.svs", "kind": "cells"}  # the argument wins over the table's attrs
    assert cell_table_metadata(path) == want
    back = read_cell_table(path)
    assert back.attrs["histolatent"] == want
    for c in ("x", "y", "mpp", "x_um", "y_um", "area_um2", "cell_id"):
        assert back[c].dtype == cells[c].dtype, c
    again = write_cell_table(back, tmp_path / "d.parquet")  # read -> write keeps the attrs
    assert cell_table_metadata(again) == want
    both = concat_parquet([path, again], tmp_path / "both.parquet", metadata={"kind": "cells", "n_parts": 2})
    out = read_cell_table(both)
    assert out.attrs["histolatent"] == {"kind": "cells", "n_parts": 2}
    assert out.cell_id.tolist() == [0, 1, 0, 1] and out.y_um.tolist() == [3.0, 7.875, 3.0, 7.875]


def test_cell_table_validation(tmp_path):
    with pytest.raises(InputError, match="missing required columns"):
        write_cell_table(pd.DataFrame({"x": [1.0]}), tmp_path / "bad.parquet")
    bad = _cells()
    bad.at[0, "polygon"] = np.array([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="polygon"):
        write_cell_table(bad, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
    with pytest.raises(InputError, match="does not exist"):
        read_cell_table(tmp_path / "missing.parquet")


def test_geojson_is_a_valid_qupath_feature_collection(tmp_path):
    cells = _cells()
    fc = geojson_from_cells(cells)
    assert validate_feature_collection(fc) == []
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    f = fc["features"][0]
    assert f["geometry"]["type"] == "Polygon"
    assert f["properties"]["objectType"] == "detection"
    assert f["properties"]["classification"]["name"] == "tumour"
    assert fc["features"][1]["properties"]["measurements"]["area_um2"] is None  # NaN -> null
    ring = np.array(f["geometry"]["coordinates"][0])
    assert np.array_equal(ring[0], ring[-1])
    x, y = ring[:, 0], ring[:, 1]
    assert 0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) > 0  # right-hand rule
    assert ring.min(axis=0).tolist() == [10.5, 10.5]  # pixel centres -> QuPath pixel corners
    path = write_geojson(cells, tmp_path / "cells.geojson")
    data = json.loads(path.read_text())  # strict JSON (no NaN)
    assert validate_feature_collection(data) == []
    polys = read_geojson_polygons(path)  # the package's own reader reads it back
    assert len(polys) == 2 and polys[1][0].shape == (4, 2)
    pts = geojson_from_cells(cells, geometry="points")
    assert validate_feature_collection(pts) == []
    assert sorted(f["properties"]["classification"]["name"] for f in pts["features"]) == ["lymphocyte", "tumour"]
    assert validate_feature_collection({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1]]]}}]})


MONUSEG_XML = """<?xml version="1.0"?>
<Annotations><Annotation Id="1"><Regions>
 <Region Id="1"><Vertices><Vertex X="2" Y="2"/><Vertex X="8" Y="2"/><Vertex X="8" Y="8"/><Vertex X="2" Y="8"/></Vertices></Region>
 <Region Id="2"><Vertices><Vertex X="12" Y="3" Z="0"/><Vertex X="17" Y="3"/><Vertex X="17" Y="9"/><Vertex X="12" Y="9"/></Vertices></Region>
</Regions></Annotation></Annotations>"""


def test_monuseg_xml_and_label_images(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(MONUSEG_XML)
    lab = read_monuseg_xml(xml, (12, 20))
    assert lab.shape == (12, 20) and set(np.unique(lab)) == {0, 1, 2}
    assert (lab == 1).sum() == 49 and (lab == 2).sum() == 42  # vertices included: 7x7 and 6x7 px
    png = tmp_path / "l.png"
    Image.fromarray(lab.astype(np.uint16)).save(png)
    assert np.array_equal(read_label_image(png), lab)
    # a folder of images + annotations
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "annotations").mkdir()
    Image.fromarray(np.full((12, 20, 3), 200, np.uint8)).save(tmp_path / "set" / "images" / "a.png")
    xml.rename(tmp_path / "set" / "annotations" / "a.xml")
    [(name, rgb, inst)] = read_annotated_folder(tmp_path / "set")
    assert name == "a" and rgb.shape == (12, 20, 3) and np.array_equal(inst, lab)
    bad = tmp_path / "bad.xml"
    bad.write_text("<Annotations><Region>")
    with pytest.raises(InputError, match="not valid XML"):
        read_monuseg_xml(bad, (4, 4))
