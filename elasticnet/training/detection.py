"""Lesion-level detection metrics, as mammography readers count them (torch-free).

A prediction is read as *candidates*: the connected components of ``probability > candidate_threshold``,
each scored by its highest probability. A candidate whose centre (the component's centroid) lies inside an
annotated lesion (a connected component of the mask) detects that lesion; a second candidate on a lesion
already detected is neither a hit nor a false positive; any other candidate is a false positive.

Sweeping a threshold over the candidates' scores gives the FROC curve: sensitivity (the share of lesions
detected) against false positives per film. ``sensitivity_at(curve, 1.0)`` is the sensitivity at <= 1 false
positive per film, the operating point mammography CAD systems are compared at.

Two checks of where lesions are lost: ``lesions_detectable`` (the share some candidate detects at any
false-positive rate, the ceiling of the curve) and ``lesions_covered`` (the share any candidate touches: the
difference was swallowed by a candidate centred elsewhere, e.g. a mass inside a marked region of dense
tissue); and a second FROC traced by the segmentation threshold itself (the candidates are the components of
``probability > t`` for each t of SWEEP, ``threshold_froc``), which splits such merged regions. And which
lesions are found by size (``sensitivity_by_size``): lesions binned by their equivalent diameter in pixels of
the evaluated image (SIZE_BINS), each bin's share detected at a false-positive rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise

import cv2
import numpy as np

CANDIDATE_THRESHOLD = 0.1  # probabilities above this form candidates; the FROC sweep scores them
FP_RATES = (0.5, 1.0, 2.0)  # false positives per film at which sensitivity is reported
# segmentation thresholds of the second FROC (candidates: the components of probability > t, for each t)
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
# equivalent diameters (pixels of the evaluated image) that split lesions into small / medium / large
SIZE_BINS = (16.0, 32.0)


@dataclass
class DetectionTally:
    """Candidates and lesions of every film seen so far (add films with :meth:`add`)."""

    candidate_threshold: float = CANDIDATE_THRESHOLD
    scores: list[float] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)  # global lesion id a candidate detects, -1: a false positive
    lesions: int = 0
    covered: int = 0  # lesions with a candidate pixel on them (detected, or inside a candidate centred elsewhere)
    films: int = 0
    normal_films: int = 0
    normal_films_flagged: int = 0  # normal films with a candidate scoring above the operating threshold
    operating_threshold: float = 0.5
    # per SWEEP threshold: lesions detected and false positives when the candidates are the components of
    # probability > t (the FROC traced by the segmentation threshold)
    sweep: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in SWEEP])
    lesion_sizes: list[float] = field(default_factory=list)  # equivalent diameter (px) of each lesion, by id

    def add(self, prob: np.ndarray, mask: np.ndarray) -> None:
        """One film: ``prob`` (H, W) probabilities, ``mask`` (H, W) with lesions > 0.5."""
        lesion_labels, count = _components(mask > 0.5)
        count -= 1  # label 0 is the background
        offset = self.lesions
        scores = []
        labels, n = _components(prob > self.candidate_threshold)
        if n > 1:
            centroids = _centroids(labels, n)
            peaks = _maxima(prob, labels, n)
            for k in range(1, n):
                row, col = (int(np.rint(v)) for v in centroids[k])
                inside = int(lesion_labels[row, col]) if count else 0
                self.scores.append(float(peaks[k]))
                self.hits.append(offset + inside - 1 if inside else -1)
                scores.append(float(peaks[k]))
        for counts, (_, found, fp, _) in zip(self.sweep, _threshold_counts(prob, lesion_labels, count + 1, SWEEP)):
            counts[0] += found
            counts[1] += fp
        if count and n > 1:  # label 0 is the background of both
            self.covered += int(np.count_nonzero(np.bincount(lesion_labels[labels > 0], minlength=count + 1)[1:]))
        if count:
            areas = np.bincount(lesion_labels.ravel(), minlength=count + 1)[1:]
            self.lesion_sizes.extend((2.0 * np.sqrt(areas / np.pi)).tolist())
        self.lesions += count
        self.films += 1
        if count == 0:
            self.normal_films += 1
            self.normal_films_flagged += int(any(s > self.operating_threshold for s in scores))

    def merge(self, other: DetectionTally) -> DetectionTally:
        """The films of both tallies in one (e.g. the test folds of a cross-validation, pooled)."""
        return DetectionTally(
            candidate_threshold=self.candidate_threshold,
            scores=self.scores + other.scores,
            hits=self.hits + [h + self.lesions if h >= 0 else -1 for h in other.hits],
            lesions=self.lesions + other.lesions,
            covered=self.covered + other.covered,
            films=self.films + other.films,
            normal_films=self.normal_films + other.normal_films,
            normal_films_flagged=self.normal_films_flagged + other.normal_films_flagged,
            operating_threshold=self.operating_threshold,
            sweep=[[a[0] + b[0], a[1] + b[1]] for a, b in zip(self.sweep, other.sweep)],
            lesion_sizes=self.lesion_sizes + other.lesion_sizes,
        )

    def to_dict(self) -> dict:
        """Every count and candidate as plain numbers and lists (JSON): the tally again with :meth:`from_dict`,
        so a pooled table can be made from saved evaluations without the weights."""
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> DetectionTally:
        """A tally saved by :meth:`to_dict`; ``ValueError`` naming the keys when ``saved`` is not one."""
        names = {f.name for f in fields(cls)}
        if not isinstance(saved, dict) or set(saved) != names:
            keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"not a saved detection tally: keys {keys}, expected {sorted(names)}")
        tally = cls(**saved)
        if len(tally.scores) != len(tally.hits) or len(tally.sweep) != len(SWEEP):
            raise ValueError("not a saved detection tally: scores and hits differ in length, or another SWEEP")
        return tally

    def threshold_froc(self) -> list[tuple[float, float, float]]:
        """(segmentation threshold, false positives per film, sensitivity) for each SWEEP threshold."""
        films, lesions = max(1, self.films), max(1, self.lesions)
        return [(t, fp / films, found / lesions) for t, (found, fp) in zip(SWEEP, self.sweep)]

    def _walk(self):
        """(score threshold, false positives, lesions detected) at each score of the candidates, from the
        strictest down; candidates with equal scores enter together."""
        order = np.argsort(-np.asarray(self.scores, dtype=np.float64), kind="stable")
        detected: set[int] = set()
        fp = 0
        for rank, i in enumerate(order):
            hit = self.hits[i]
            if hit < 0:
                fp += 1
            else:
                detected.add(hit)
            if rank + 1 == len(order) or self.scores[order[rank + 1]] != self.scores[i]:
                yield self.scores[i], fp, detected

    def froc(self) -> list[tuple[float, float, float]]:
        """(score threshold, false positives per film, sensitivity), from the strictest threshold down."""
        films, lesions = max(1, self.films), max(1, self.lesions)
        return [(score, fp / films, len(detected) / lesions) for score, fp, detected in self._walk()]

    def detected_at(self, fp_per_film: float) -> set[int]:
        """The lesions (ids) detected at the loosest score threshold of the FROC with no more than
        ``fp_per_film`` false positives per film: the point :func:`sensitivity_at` reads."""
        best: set[int] = set()
        for _, fp, detected in self._walk():
            if fp / max(1, self.films) > fp_per_film:
                break  # false positives only grow from here
            best = set(detected)
        return best

    def sensitivity_by_size(
        self, fp_per_film: float = 1.0, bins: tuple[float, ...] = SIZE_BINS
    ) -> list[tuple[float, float, int, float]]:
        """(smallest diameter, largest diameter (exclusive), lesions, sensitivity at ``fp_per_film``) per size
        bin; diameters are equivalent diameters in pixels of the evaluated image; NaN for an empty bin."""
        edges = (0.0, *bins, float("inf"))
        found = self.detected_at(fp_per_film)
        out = []
        for low, high in pairwise(edges):
            ids = [i for i, d in enumerate(self.lesion_sizes) if low <= d < high]
            share = sum(i in found for i in ids) / len(ids) if ids else float("nan")
            out.append((low, high, len(ids), share))
        return out

    def summary(self) -> dict[str, float]:
        """Sensitivity at 0.5 / 1 / 2 false positives per film and the false-positive rate on normal films
        (NaN where the films had no lesion, or no normal film)."""
        curve = self.froc()
        out = {
            f"sensitivity_at_{rate:g}fp": sensitivity_at(curve, rate) if self.lesions else float("nan")
            for rate in FP_RATES
        }
        out["fp_rate_normal"] = self.normal_films_flagged / self.normal_films if self.normal_films else float("nan")
        out["lesions"] = self.lesions
        # the share of lesions any candidate touches: detected at some false-positive rate, or swallowed by a
        # candidate centred elsewhere (e.g. a mass inside a marked region of dense tissue)
        out["lesions_covered"] = self.covered / self.lesions if self.lesions else float("nan")
        out["sensitivity_at_1fp_thresholded"] = (
            sensitivity_at(self.threshold_froc(), 1.0) if self.lesions else float("nan")
        )
        out["lesions_detectable"] = (
            len({h for h in self.hits if h >= 0}) / self.lesions if self.lesions else float("nan")
        )
        return out


def threshold_counts(
    prob: np.ndarray, mask: np.ndarray, thresholds: Iterable[float]
) -> list[tuple[float, int, int, int]]:
    """(threshold t, lesions detected, false positives, lesions) of one film when the candidates are the
    components of ``probability > t`` itself, for each t: the FROC traced by the segmentation threshold
    instead of by the scores of fixed candidates (a check that the candidate threshold is not what loses
    lesions)."""
    return _threshold_counts(prob, *_components(mask > 0.5), thresholds)


def _threshold_counts(
    prob: np.ndarray, lesion_labels: np.ndarray, count: int, thresholds: Iterable[float]
) -> list[tuple[float, int, int, int]]:
    """:func:`threshold_counts` with the film's lesions labelled already (``count`` includes label 0)."""
    out = []
    for t in thresholds:
        labels, n = _components(prob > t)
        found, fp = set(), 0
        if n > 1:
            for row, col in _centroids(labels, n)[1:]:
                inside = int(lesion_labels[int(np.rint(row)), int(np.rint(col))])
                if inside:
                    found.add(inside)
                else:
                    fp += 1
        out.append((float(t), len(found), fp, count - 1))
    return out


def sensitivity_at(curve: Iterable[tuple[float, float, float]], fp_per_film: float) -> float:
    """The highest sensitivity of the FROC curve at no more than ``fp_per_film`` false positives per film."""
    return max((sens for _, fp, sens in curve if fp <= fp_per_film), default=0.0)


def _components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels, number of labels including the background 0) of the 8-connected components."""
    n, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return labels, n


def _centroids(labels: np.ndarray, n: int) -> np.ndarray:
    """(row, col) of each label's centroid; label 0 included (unused)."""
    rows, cols = np.indices(labels.shape)
    count = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    r = np.bincount(labels.ravel(), weights=rows.ravel(), minlength=n) / np.maximum(count, 1)
    c = np.bincount(labels.ravel(), weights=cols.ravel(), minlength=n) / np.maximum(count, 1)
    return np.stack([r, c], axis=1)


def _maxima(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, labels.ravel(), values.ravel().astype(np.float64))
    return out
