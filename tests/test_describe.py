"""describe() on a hand-built Records: every number checked by hand, SCUMBLE against REFERENCES.md."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.data.describe import describe, format_description, scumble
from bench.data.labels import Records
from bench.errors import BenchError

nan = np.nan

# Nine images over labels A, B, C, D.
Y = np.array([
    [1, 1, 0, 0],  # 1: A B
    [1, 0, 0, 0],  # 2: A
    [1, 0, 1, 0],  # 3: A C
    [1, 0, 0, 0],  # 4: A
    [0, 1, 0, 0],  # 5: B
    [0, 0, 0, 0],  # 6: none
    [1, 1, 0, 1],  # 7: A B D
    [nan, 0, nan, 0],  # 8: none known positive
    [nan, nan, nan, nan],  # 9: nothing known
])


@pytest.fixture
def records() -> Records:
    boxes = pd.DataFrame({
        "image_id": ["i1", "i1", "i3"], "label": ["A", "A", "C"],
        "x": [1.0, 5.0, 2.0], "y": [1.0, 5.0, 2.0], "w": [2.0, 2.0, 3.0], "h": [2.0, 2.0, 3.0],
        "img_w": [64, 64, 64], "img_h": [64, 64, 64],
    })
    return Records(
        labels=Y, label_names=("A", "B", "C", "D"),
        image_ids=[f"i{k}" for k in range(1, 10)], paths=[f"/img/i{k}.png" for k in range(1, 10)],
        patients=["p1", "p1", "p2", "p3", "p3", "p4", "p5", "p5", "p6"],
        views=["PA", "PA", "AP", "", "AP", "PA", "PA", "AP", "LL"],
        boxes=boxes, dropped={"image file missing": 2}, kind="test", root="/img",
    )


def test_counts_prevalence_unknown(records: Records) -> None:
    d = describe(records)
    assert d["images"] == 9 and d["patients"] == 6 and d["dropped"] == {"image file missing": 2}
    assert d["labels"] == {"A": 5, "B": 3, "C": 1, "D": 1}
    assert d["unknown"] == {"A": 2, "B": 1, "C": 2, "D": 1}
    # positives / known values: A known on 7 images, B on 8, C on 7, D on 8.
    assert d["prevalence"] == pytest.approx({"A": 5 / 7, "B": 3 / 8, "C": 1 / 7, "D": 1 / 8})
    assert d["no_finding"] == 3 and d["all_unknown"] == 1  # images 6, 8, 9; image 9 alone is all NaN
    assert d["views"] == {"PA": 4, "AP": 3, "unknown": 1, "LL": 1}
    assert d["boxes"] == {"count": 3, "images": 2, "per_label": {"A": 2, "C": 1}}


def test_charte_measures_by_hand(records: Records) -> None:
    d = describe(records)
    # IRLbl = max_j n_j / n_l with n = (5, 3, 1, 1).
    assert d["irlbl"] == pytest.approx({"A": 1.0, "B": 5 / 3, "C": 5.0, "D": 5.0})
    assert d["mean_ir"] == pytest.approx((1 + 5 / 3 + 5 + 5) / 4)
    assert d["max_ir"] == pytest.approx(5.0)
    # SCUMBLE_i = 1 - geometric mean / arithmetic mean of the IRLbl of the image's labels; single-label
    # images score 0, and so do the three images without a positive (6, 8, 9): the mean is over all nine
    # images (Charte et al. 2014, mldr), not over the six with a label.
    s1 = 1 - math.sqrt(1 * 5 / 3) / ((1 + 5 / 3) / 2)  # image 1: A B
    s3 = 1 - math.sqrt(1 * 5) / ((1 + 5) / 2)  # image 3: A C
    s7 = 1 - (1 * 5 / 3 * 5) ** (1 / 3) / ((1 + 5 / 3 + 5) / 3)  # image 7: A B D
    assert d["scumble"] == pytest.approx((s1 + 0 + s3 + 0 + 0 + 0 + s7 + 0 + 0) / 9)
    assert d["scumble"] == pytest.approx(0.0547854, abs=1e-6)
    # Cardinality = positives per image (2+1+2+1+1+0+3+0+0) / 9; density = cardinality / 4.
    assert d["cardinality"] == pytest.approx(10 / 9)
    assert d["density"] == pytest.approx(10 / 36)
    assert d["labels_without_positives"] == 0


def test_scumble_counts_label_less_images_as_zero() -> None:
    """The old rule (mean over images with a label) gives 0.0447 here; Charte et al. / mldr give 0.0223."""
    # Two labels with 3 and 1 positives: IRLbl (1, 3). One image carries both, two only A, three none.
    y = np.array([[1, 1], [1, 0], [1, 0], [0, 0], [0, 0], [nan, nan]])
    s_both = 1 - math.sqrt(1 * 3) / ((1 + 3) / 2)
    assert scumble(y) == pytest.approx(s_both / 6)
    assert scumble(y) != pytest.approx(s_both / 3)  # what averaging over labelled images gave
    recs = Records(labels=y, label_names=("A", "B"), image_ids=list("abcdef"), paths=["/p"] * 6)
    assert describe(recs)["scumble"] == pytest.approx(0.0223291, abs=1e-6)
    # Adding label-less images dilutes it; removing them gives the labelled-only mean back.
    assert scumble(y[:3]) == pytest.approx(s_both / 3)
    assert math.isnan(scumble(np.zeros((4, 2)))) and math.isnan(scumble(np.zeros((0, 2))))
    with pytest.raises(ValueError, match=r"\(N, L\) matrix, got shape \(3,\)"):
        scumble(np.ones(3))


def test_pairs_and_lift_by_hand(records: Records) -> None:
    pairs = describe(records, top_pairs=None)["pairs"]
    # Counts: A&B on images 1, 7; A&C on 3; A&D on 7; B&D on 7; B&C and C&D never.
    assert [(p["labels"], p["count"]) for p in pairs] == [
        (["A", "B"], 2), (["A", "C"], 1), (["A", "D"], 1), (["B", "D"], 1)]
    # Expected under independence, over the images where both labels are known:
    # A&B: images 1-7 (m = 7), A has 5 positives there, B 3 -> 5 * 3 / 7.
    # A&C: images 1-7, 5 and 1 -> 5 / 7.  A&D: images 1-7, 5 and 1 -> 5 / 7.
    # B&D: images 1-8 (m = 8), 3 and 1 -> 3 / 8.
    expected = [15 / 7, 5 / 7, 5 / 7, 3 / 8]
    assert [p["expected"] for p in pairs] == pytest.approx(expected)
    assert [p["lift"] for p in pairs] == pytest.approx([14 / 15, 7 / 5, 7 / 5, 8 / 3])
    top = describe(records, top_pairs=2)["pairs"]
    assert [p["labels"] for p in top] == [["A", "B"], ["A", "C"]]
    assert describe(records, top_pairs=0)["pairs"] == []


def test_json_ready_with_undefined_numbers() -> None:
    recs = Records(labels=np.array([[1, 0, nan], [1, 0, nan]]), label_names=("A", "B", "C"),
                   image_ids=["x", "y"], paths=["/x", "/y"])
    d = describe(recs)
    json.dumps(d, allow_nan=False)  # no NaN, no inf anywhere
    assert d["irlbl"] == {"A": 1.0, "B": None, "C": None}
    assert d["prevalence"] == {"A": 1.0, "B": 0.0, "C": None}
    assert d["labels_without_positives"] == 2 and d["mean_ir"] == 1.0 and d["max_ir"] == 1.0
    assert d["scumble"] == 0.0 and d["patients"] is None and d["views"] == {"unknown": 2}
    assert d["boxes"] == {"count": 0, "images": 0, "per_label": {}} and d["pairs"] == []


def test_no_positive_anywhere_gives_none() -> None:
    recs = Records(labels=np.zeros((3, 2)), label_names=("A", "B"), image_ids=["x", "y", "z"], paths=["/x"] * 3)
    d = describe(recs)
    json.dumps(d, allow_nan=False)
    assert d["mean_ir"] is None and d["max_ir"] is None and d["scumble"] is None
    assert d["no_finding"] == 3 and d["cardinality"] == 0.0


def test_bad_top_pairs(records: Records) -> None:
    with pytest.raises(BenchError, match=r"top_pairs=-1 is not valid"):
        describe(records, top_pairs=-1)


def test_format_description(records: Records) -> None:
    text = format_description(describe(records))
    lines = text.splitlines()
    assert lines[0] == "test: 9 images, 6 patients"
    assert "dropped: image file missing 2" in lines
    assert "MeanIR 3.17" in text and "MaxIR 5.00" in text and "SCUMBLE 0.055" in text
    row_a = next(line for line in lines if line.startswith("A "))
    assert row_a.split() == ["A", "5", "0.7143", "2", "1.00", "2"]
    assert any(line.split() == ["A", "+", "B", "2", "2.14", "0.93"] for line in lines)
    assert "views: PA 4, AP 3, unknown 1, LL 1" in lines
