"""Readers against the real data sets in ../shared/datasets (skipped where that folder is absent).

The data are licensed for research only and are never copied into the project; these tests only read them.
"""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from helpers import SHARED_DATASETS

from elasticnet.data.cvc import find_cvc
from elasticnet.data.imageio import read_image
from elasticnet.data.mias import find_mias
from elasticnet.data.records import decode

CVC = SHARED_DATASETS / "cvc-clinicdb"
CVC_TIF = SHARED_DATASETS / "cvc-clinicdb-tif-sample"
MIAS = SHARED_DATASETS / "mini-mias"


def needs(path):
    return pytest.mark.skipif(not path.is_dir(), reason=f"{path} not present")


@needs(CVC)
def test_cvc_png_layout_and_shipped_sequence_table():
    records = find_cvc(CVC)
    assert len(records) == 612 and len({r.group for r in records}) == 29
    with open(CVC / "sequences.csv") as f:
        table = {row["id"]: int(row["sequence"]) for row in csv.DictReader(f)}
    assert all(int(r.group[3:]) == table[r.name] for r in records)


@needs(CVC_TIF)
@needs(CVC)
def test_cvc_official_tiffs_equal_the_png_conversion():
    for record in find_cvc(CVC_TIF):
        image, mask = decode(record, 3)
        png = read_image(CVC / "images" / f"{record.name}.png")
        png_mask = cv2.imread(str(CVC / "masks" / f"{record.name}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(image, png) and np.array_equal(mask, png_mask), record.name


@needs(MIAS)
def test_mias_masks_drawn_from_info_equal_the_shipped_masks():
    records = find_mias(MIAS)
    assert len(records) == 322 and len({r.group for r in records}) == 161
    with_lesion = [r for r in records if r.circles]
    assert len(with_lesion) == 55
    for record in with_lesion + [r for r in records if not r.circles][:10]:
        _, mask = decode(record, 1)
        shipped = cv2.imread(str(MIAS / "masks" / f"{record.name}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(mask, shipped), record.name
    assert sum(bool(r.circles) for r in find_mias(MIAS, "all")) == 111
    # Info.txt names a mass on mdb059 and calcifications on mdb216, mdb233 and mdb245 without locating them
    assert [r.name for r in records if r.unlocated] == ["mdb059"]
    assert [r.name for r in find_mias(MIAS, "all") if r.unlocated] == ["mdb059", "mdb216", "mdb233", "mdb245"]


@needs(MIAS)
def test_mias_raw_pgm_equals_png():
    for pgm in sorted((MIAS / "raw-pgm-sample").glob("*.pgm")):
        assert np.array_equal(read_image(pgm), read_image(MIAS / "images" / f"{pgm.stem}.png")), pgm.name
