"""Lesion-level detection metrics: candidates, hits, false positives and the FROC curve, on films drawn here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from elasticnet.training.detection import DetectionTally, sensitivity_at, threshold_counts


def film(lesions=(), blobs=(), size=64) -> tuple[np.ndarray, np.ndarray]:
    """A mask with circular lesions (row, col, radius) and a probability map with blobs (row, col, radius, peak)."""
    mask = np.zeros((size, size), np.uint8)
    for r, c, rad in lesions:
        cv2.circle(mask, (c, r), rad, 1, -1)
    prob = np.zeros((size, size), np.float32)
    for r, c, rad, peak in blobs:
        blob = np.zeros_like(prob)
        cv2.circle(blob, (c, r), rad, 1.0, -1)
        prob = np.maximum(prob, blob * peak)
    return prob, mask


def test_a_blob_centred_in_a_lesion_detects_it_and_one_elsewhere_is_a_false_positive():
    tally = DetectionTally()
    tally.add(*film(lesions=[(20, 20, 8)], blobs=[(21, 19, 5, 0.9), (50, 50, 4, 0.7)]))
    assert tally.lesions == 1 and tally.films == 1 and sorted(tally.hits) == [-1, 0]
    curve = tally.froc()
    # strictest first: the hit (0.9) alone, then the false positive (0.7) joins
    assert curve == [(pytest.approx(0.9), 0.0, 1.0), (pytest.approx(0.7), 1.0, 1.0)]
    assert sensitivity_at(curve, 0.5) == 1.0


def test_a_second_candidate_on_a_detected_lesion_is_neither_hit_nor_false_positive():
    tally = DetectionTally()
    tally.add(*film(lesions=[(30, 30, 12)], blobs=[(26, 30, 3, 0.9), (35, 30, 3, 0.8)]))
    assert tally.froc()[-1][1:] == (0.0, 1.0)


def test_a_blob_that_overlaps_but_is_centred_outside_the_lesion_misses_it():
    tally = DetectionTally()
    tally.add(*film(lesions=[(20, 20, 5)], blobs=[(20, 30, 8, 0.9)]))  # centre 10 px right, radius 5
    assert tally.froc() == [(pytest.approx(0.9), 1.0, 0.0)]


def test_sensitivity_at_fp_rates_pools_films_and_normal_film_rate():
    tally = DetectionTally()
    tally.add(*film(lesions=[(20, 20, 6)], blobs=[(20, 20, 4, 0.95)]))  # found, strongly
    tally.add(*film(lesions=[(40, 40, 6)], blobs=[(40, 40, 4, 0.3)]))  # found, weakly
    tally.add(*film(blobs=[(10, 10, 3, 0.6)]))  # a normal film with a false positive at 0.6 (> 0.5)
    tally.add(*film())  # a clean normal film
    s = tally.summary()
    # 4 films: at the 0.6 threshold 1 FP / 4 films = 0.25 FP per film with 1 of 2 lesions; at 0.3 both
    assert s["sensitivity_at_0.5fp"] == 1.0 and s["lesions"] == 2
    assert s["fp_rate_normal"] == 0.5
    strict = DetectionTally()
    strict.add(*film(lesions=[(20, 20, 6)], blobs=[(50, 50, 4, 0.9)]))  # only a false positive
    assert strict.summary()["sensitivity_at_1fp"] == 0.0 and np.isnan(strict.summary()["fp_rate_normal"])


def test_lesions_are_told_apart_as_detected_swallowed_or_unseen_and_pooled_by_merge():
    a = DetectionTally()
    # lesion 1 detected; lesion 2 inside a large blob centred elsewhere (swallowed); lesion 3 not touched
    a.add(*film(lesions=[(12, 12, 4), (40, 20, 4), (50, 52, 4)], blobs=[(12, 12, 3, 0.9), (40, 30, 12, 0.95)]))
    s = a.summary()
    assert (a.lesions, a.covered) == (3, 2)
    assert s["lesions_detectable"] == pytest.approx(1 / 3) and s["lesions_covered"] == pytest.approx(2 / 3)
    b = DetectionTally()
    b.add(*film(lesions=[(30, 30, 5)], blobs=[(30, 30, 4, 0.8)]))
    pooled = a.merge(b).summary()
    assert pooled["lesions_detectable"] == 0.5 and pooled["lesions_covered"] == 0.75


def test_threshold_counts_split_a_blob_that_swallows_a_lesion_at_a_higher_threshold():
    prob, mask = film(lesions=[(32, 20, 5)], blobs=[(32, 34, 14, 0.4), (32, 20, 4, 0.9)])
    # at 0.1 one merged component centred off the lesion: a miss and a false positive; at 0.5 the lesion's own
    # peak stands alone; at 0.95 nothing is left
    assert threshold_counts(prob, mask, [0.1, 0.5, 0.95]) == [(0.1, 0, 1, 1), (0.5, 1, 0, 1), (0.95, 0, 0, 1)]
    assert threshold_counts(*film(), [0.5]) == [(0.5, 0, 0, 0)]
    tally = DetectionTally()
    tally.add(prob, mask)
    tally.add(*film())  # a normal film
    curve = dict((t, (fp, sens)) for t, fp, sens in tally.threshold_froc())
    assert curve[0.1] == (0.5, 0.0) and curve[0.5] == (0.0, 1.0) and curve[0.95] == (0.0, 0.0)
    assert tally.summary()["sensitivity_at_1fp_thresholded"] == 1.0
    assert tally.summary()["sensitivity_at_1fp"] == 0.0  # the fixed candidates at 0.1 lose it


def test_sensitivity_by_size_reads_the_same_operating_point_and_pools_sizes_by_merge():
    a = DetectionTally()
    # a small lesion (diameter ~8 px) found strongly, a large one (~40 px) found only below a false positive
    a.add(*film(lesions=[(12, 12, 4), (40, 40, 20)], blobs=[(12, 12, 3, 0.9), (40, 40, 5, 0.3), (5, 60, 2, 0.6)]))
    assert [round(d) for d in a.lesion_sizes] == [8, 40]  # equivalent diameters of the drawn discs (radius 4, 20)
    # 1 film: at 0.6 one false positive per film with the small lesion; at 0.3 both, still 1 FP per film
    assert a.detected_at(0.5) == {0} and a.detected_at(1.0) == {0, 1}
    for rate in (0.5, 1.0):
        assert len(a.detected_at(rate)) / a.lesions == sensitivity_at(a.froc(), rate)
    small, medium, large = a.sensitivity_by_size(0.5)
    assert (small[2:], medium[2], large[2:]) == ((1, 1.0), 0, (1, 0.0)) and np.isnan(medium[3])
    b = DetectionTally()
    b.add(*film(lesions=[(30, 30, 10)], blobs=[(30, 30, 4, 0.8)]))  # a medium lesion (~20 px), found
    pooled = a.merge(b)
    assert [n for _, _, n, _ in pooled.sensitivity_by_size(0.5)] == [1, 1, 1]
    # 2 films: the false positive costs 0.5 per film; below that the large lesion is not yet found
    assert [s for _, _, _, s in pooled.sensitivity_by_size(0.25)] == [1.0, 1.0, 0.0]
    assert [s for _, _, _, s in pooled.sensitivity_by_size(0.5)] == [1.0, 1.0, 1.0]


def test_a_film_without_candidates_or_lesions_counts_only_as_a_film():
    tally = DetectionTally()
    tally.add(*film())
    assert tally.froc() == [] and tally.films == 1 and np.isnan(tally.summary()["sensitivity_at_1fp"])


def test_training_with_lesion_detection_reports_it_per_subnet(tmp_path):
    """The sub-net table of a run configured for it carries the detection columns (validation and test)."""
    from helpers import write_folder_dataset

    from elasticnet.config import build_config
    from elasticnet.training.trainer import train

    data = write_folder_dataset(tmp_path / "d", count=10, size=(32, 32))
    cfg = build_config(
        None,
        {
            "data": str(data),
            "base_width": "4",
            "depths": "2",
            "widths": "0.5,1",
            "image_size": "32x32",
            "batch_size": "4",
            "max_steps": "2",
            "calib_batches": "1",
            "test_fraction": "0.2",
            "lesion_detection": True,
            "out": str(tmp_path / "run"),
        },
    )
    run = train(cfg, echo=lambda s: None, progress=False)
    text = (run / "subnets.csv").read_text()
    for column in (
        "sensitivity_at_0.5fp",
        "sensitivity_at_1fp",
        "sensitivity_at_2fp",
        "fp_rate_normal",
        "test_sensitivity_at_1fp",
    ):
        assert column in text.splitlines()[0], column
    assert "FROC" in (run / "subnets.md").read_text()


def test_pooling_two_tallies_equals_one_tally_of_all_films():
    films = [
        film(lesions=[(20, 20, 6)], blobs=[(20, 20, 4, 0.9), (50, 50, 3, 0.4)]),
        film(lesions=[(30, 30, 6), (50, 12, 5)], blobs=[(50, 12, 3, 0.7)]),
        film(blobs=[(10, 10, 3, 0.8)]),
    ]
    whole, a, b = DetectionTally(), DetectionTally(), DetectionTally()
    for i, f in enumerate(films):
        whole.add(*f)
        (a if i < 1 else b).add(*f)
    pooled = a.merge(b)
    assert pooled.froc() == whole.froc() and pooled.summary() == whole.summary()


def test_a_tally_saved_as_json_reads_back_to_the_same_figures():
    """mammography_table commits each fold's tallies (JSON) and pools them later without the weights."""
    import json

    tally = DetectionTally()
    tally.add(*film(lesions=[(20, 20, 6)], blobs=[(20, 20, 4, 0.95), (50, 50, 3, 0.7)]))
    tally.add(*film(blobs=[(10, 10, 3, 0.6)]))
    again = DetectionTally.from_dict(json.loads(json.dumps(tally.to_dict())))
    assert again == tally and again.summary() == tally.summary() and again.froc() == tally.froc()
    assert again.merge(tally).summary() == tally.merge(tally).summary()
    with pytest.raises(ValueError, match="not a saved detection tally"):
        DetectionTally.from_dict({"scores": []})
    with pytest.raises(ValueError, match="differ in length"):
        DetectionTally.from_dict(tally.to_dict() | {"hits": []})
