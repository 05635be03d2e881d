"""Synthetic data, the folder reader and its error reports, augmentation alignment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import write_folder_dataset

from elasticnet.config import DataConfig
from elasticnet.data import augment, build_datasets
from elasticnet.data.folder import find_samples
from elasticnet.data.records import load_records
from elasticnet.data.synthetic import synthetic_polyp, synthetic_polyp_set
from elasticnet.errors import UserError


def test_synthetic_is_deterministic_and_index_addressable():
    a_img, a_mask = synthetic_polyp(3, 5, 64, 80)
    b_img, b_mask = synthetic_polyp(3, 5, 64, 80)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    images, _masks = synthetic_polyp_set(6, 64, 80, seed=3)
    assert np.array_equal(images[5], a_img)
    assert not np.array_equal(synthetic_polyp(4, 5, 64, 80)[0], a_img)


def test_synthetic_frames_look_like_the_spec():
    images, masks = synthetic_polyp_set(40, 96, 128, seed=0)
    assert images[0].shape == (96, 128, 3) and images[0].dtype == np.uint8
    assert masks[0].shape == (96, 128) and set(np.unique(np.concatenate(masks))) <= {0, 255}
    areas = np.array([(m > 0).mean() for m in masks])
    assert (areas > 0).all(), "every frame holds a polyp"
    assert areas.min() < 0.01 and areas.max() > 0.08, "small and large polyps"
    reddish = np.mean([im[..., 0].mean() > im[..., 2].mean() for im in images])
    assert reddish > 0.95
    # low contrast: polyp and mucosa means are close relative to the image's spread
    contrast = [abs(im[m > 0].mean() - im[m == 0].mean()) / im.std() for im, m in zip(images, masks)]
    assert np.median(contrast) < 1.0


def test_folder_reader_pairs_by_stem(tmp_path):
    root = write_folder_dataset(tmp_path / "d", count=4, suffix=".jpg")
    samples = find_samples(root)
    assert [s.name for s in samples] == ["1", "2", "3", "4"]
    images, masks = load_records(samples, 3, (32, 32))
    assert images[0].shape == (32, 32, 3) and set(np.unique(masks[0])) <= {0, 255}


def test_folder_reader_reports_every_problem_at_once(tmp_path):
    root = write_folder_dataset(tmp_path / "d", count=5)
    (root / "masks" / "2.png").unlink()  # missing mask
    (root / "masks" / "9.png").write_bytes((root / "masks" / "1.png").read_bytes())  # mask without image
    with pytest.raises(UserError) as e:
        find_samples(root)
    message = str(e.value)
    assert "2 problem(s)" in message and "2.png: no mask" in message and "9.png: no image" in message


def test_two_files_of_one_folder_with_one_name_are_a_problem_not_a_silent_choice(tmp_path):
    root = write_folder_dataset(tmp_path / "d", count=4)
    (root / "images" / "1.jpg").write_bytes((root / "images" / "2.png").read_bytes())
    (root / "masks" / "3.bmp").write_bytes((root / "masks" / "3.png").read_bytes())
    with pytest.raises(UserError) as e:
        find_samples(root)
    message = str(e.value)
    assert "2 problem(s)" in message
    assert "1.jpg and 1.png share the name '1'" in message and "3.bmp and 3.png share the name '3'" in message


def test_folder_reader_reports_unreadable_and_mismatched_files(tmp_path):
    import cv2

    root = write_folder_dataset(tmp_path / "d", count=5)
    (root / "images" / "1.png").write_bytes(b"not an image")
    data = (root / "images" / "2.png").read_bytes()
    (root / "images" / "2.png").write_bytes(data[: len(data) // 3])  # truncated
    cv2.imwrite(str(root / "masks" / "3.png"), np.zeros((10, 10), np.uint8))  # wrong size
    with pytest.raises(UserError) as e:
        load_records(find_samples(root), 3, (32, 32), root)
    message = str(e.value)
    assert "3 problem(s)" in message
    assert "1.png: unreadable" in message and "2.png: unreadable" in message and "is 48x40 but its mask" in message


@pytest.mark.parametrize("dataset", ["folder", "cvc-clinicdb"])
def test_every_kind_of_problem_is_reported_in_one_pass(tmp_path, capfd, dataset):
    """Unpaired files, a truncated image and a size mismatch in one folder: one message names all of them (the
    user fixes the folder once), and OpenCV's own decoder warnings stay off the terminal."""
    import cv2

    from elasticnet.config import DataConfig
    from elasticnet.data.build import load_all

    root = write_folder_dataset(tmp_path / "d", count=6)
    (root / "masks" / "2.png").unlink()  # a missing mask
    data = (root / "images" / "3.png").read_bytes()
    (root / "images" / "3.png").write_bytes(data[: len(data) // 2])  # truncated
    cv2.imwrite(str(root / "masks" / "4.png"), np.zeros((10, 10), np.uint8))  # wrong size
    with pytest.raises(UserError) as e:
        load_all(DataConfig(data=str(root), dataset=dataset, image_size=[32, 32]), 3)
    message = str(e.value)
    assert "3 problem(s)" in message, message
    assert "2.png: no mask" in message and "3.png: unreadable" in message and "but its mask 4.png" in message
    assert "WARN" not in capfd.readouterr().err


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_training_refuses_masks_that_mark_no_lesion(tmp_path, cache):
    """Masks saved as a 0/100 label map binarise to empty: a training would learn to predict nothing. One mask
    that marks a lesion among empty ones (normal images) is a legitimate training set; other users of the
    split (evaluation of normal images) are not refused."""
    import cv2

    root = write_folder_dataset(tmp_path / "d", count=10, size=(32, 32))
    for mask in (root / "masks").iterdir():
        cv2.imwrite(str(mask), np.where(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 0, 100, 0).astype(np.uint8))
    cfg = DataConfig(data=str(root), image_size=[32, 32], cache=cache)
    train = build_datasets(cfg, 3, 0).train  # not refused without require_lesions
    with pytest.raises(UserError, match=f"no mask of the {len(train)} training images of .* marks a lesion"):
        build_datasets(cfg, 3, 0, require_lesions=True)
    cv2.imwrite(str(root / "masks" / f"{train.names[-1]}.png"), np.full((32, 32), 255, np.uint8))
    assert build_datasets(cfg, 3, 0, require_lesions=True).train.names == train.names


def test_a_group_file_is_matched_by_name_with_or_without_extension_and_must_list_every_image(tmp_path):
    root = write_folder_dataset(tmp_path / "d", count=4, size=(32, 32))
    groups = root / "groups.csv"
    groups.write_text("name,patient\n1.png,a\nimages/2.png,a\n3,b\n4.PNG,b\n")
    assert [r.group for r in find_samples(root)] == ["a", "a", "b", "b"]
    groups.write_text("name,patient\n1,a\n2,a\n")
    with pytest.raises(UserError) as e:
        find_samples(root)
    assert "2 problem(s)" in str(e.value) and "3.png: not listed in groups.csv" in str(e.value)
    # where no grouped split is built (a random split, a whole folder evaluated) the unlisted are their own groups
    assert [r.group for r in find_samples(root, grouped=False)] == ["a", "a", "3", "4"]
    cfg = DataConfig(data=str(root), image_size=[32, 32], split="random", val_fraction=0.25, test_fraction=0.25)
    assert len(build_datasets(cfg, 3, 0).train) == 2
    with pytest.raises(UserError, match=r"3\.png: not listed in groups\.csv"):
        build_datasets(dataclasses.replace(cfg, split="grouped"), 3, 0)
    from elasticnet.cli.evaluate import eval_loader
    from elasticnet.config import RunConfig

    grouped_run = RunConfig(data=dataclasses.replace(cfg, split="grouped"))  # eval --data: every image, no split
    assert len(eval_loader(grouped_run, str(root), 2)[0].dataset) == 4
    groups.write_text("name,patient\nframe-1,a\nframe-2,a\n")  # names that match no image: one problem
    with pytest.raises(UserError, match=r"(?s)1 problem.*groups.csv: names none of the 4 images .*'frame-1'"):
        find_samples(root)
    groups.write_text("name,patient\n1,a\n1.png,b\n2,a\n3,b\n4,b\n")
    with pytest.raises(UserError, match=r"puts '1.png' in two groups \('a', 'b'\)"):
        find_samples(root)


def test_a_grouped_split_of_a_folder_without_a_group_file_is_refused(tmp_path):
    """Every image would be its own group: the 'grouped' split would be a random one. Reading the whole
    folder (evaluation) needs no groups."""
    from elasticnet.data.build import load_all, split_sizes

    root = write_folder_dataset(tmp_path / "d", count=10, size=(32, 32))
    cfg = DataConfig(data=str(root), image_size=[32, 32], split="grouped")
    for call in (lambda: build_datasets(cfg, 3, 0), lambda: split_sizes(cfg)):
        with pytest.raises(UserError, match=r"--split grouped needs the groups of .*Add groups\.csv"):
            call()
    assert len(load_all(cfg, 3).images) == 10
    (root / "groups.csv").write_text("name,group\n" + "".join(f"{i},g{i % 3}\n" for i in range(1, 11)))
    split = build_datasets(cfg, 3, 0)
    parts = {row["group"]: set() for row in split.rows}
    for row in split.rows:
        parts[row["group"]].add(row["split"])
    assert all(len(p) == 1 for p in parts.values())  # each group in one part


@pytest.mark.parametrize("layout", ["missing", "no_masks", "empty"])
def test_folder_reader_bad_layouts(tmp_path, layout):
    root = tmp_path / "d"
    if layout != "missing":
        (root / "images").mkdir(parents=True)
    if layout == "empty":
        (root / "masks").mkdir()
    with pytest.raises(UserError, match=r"does not exist|must hold images/ and masks/|no images"):
        find_samples(root)


def test_split_is_seeded_disjoint_and_complete():
    cfg = DataConfig(image_size=[32, 32], synthetic_count=20, val_fraction=0.25)
    other = DataConfig(image_size=[32, 32], synthetic_count=20, val_fraction=0.25, split_seed=1)
    a, b, c = build_datasets(cfg, 3, 0), build_datasets(cfg, 3, 1), build_datasets(other, 3, 0)
    assert a.val.names == b.val.names  # the training seed leaves the split alone
    assert a.val.names != c.val.names
    assert not set(a.train.names) & set(a.val.names)
    assert len(a.train) + len(a.val) == 20 and len(a.val) == 5 and a.test is None


@pytest.mark.parametrize("kind", ["endoscopy", "mammography"])
def test_augmentation_keeps_image_and_mask_aligned(kind):
    _images, masks = synthetic_polyp_set(1, 64, 64, seed=0)
    image = np.zeros((64, 64, 3), np.uint8)
    image[masks[0] > 0] = 255  # the image *is* its mask: any misalignment shows
    pipeline = augment.build(kind, seed=0)
    for _ in range(20):
        out_image, out_mask = augment.apply(pipeline, image, masks[0])
        bright, fg = out_image.max(axis=2) > 200, out_mask > 127
        agree = (bright == fg).mean()
        assert agree > 0.97, agree


def test_dataset_yields_normalised_tensors():
    cfg = DataConfig(image_size=[32, 32], synthetic_count=4, val_fraction=0.5, augment="none")
    split = build_datasets(cfg, 3, 0)
    image, mask = split.train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert -3 < image.mean() < 3


def test_a_binary_group_file_is_one_clear_error(tmp_path):
    root = write_folder_dataset(tmp_path / "ds", count=4)
    (root / "groups.csv").write_bytes(b"\xff\xfe\x00\x00\x81binary")
    with pytest.raises(UserError, match="not a CSV text file"):
        find_samples(root)


def test_a_mias_circle_far_outside_the_film_is_a_listed_problem():
    from elasticnet.data.records import draw_circles

    assert draw_circles((64, 64), [(32, 32, 10)]).max() == 255
    with pytest.raises(ValueError, match="lies far outside the 64x64 film"):
        draw_circles((64, 64), [(32, 32, 1e12)])


@pytest.mark.parametrize(
    "split", [{"split": "random"}, {"split": "grouped", "folds": 5, "fold": 2}, {"test_fraction": 0.25}]
)
@pytest.mark.parametrize("source", ["synthetic", "cvc-clinicdb"])
def test_split_sizes_from_the_listing_equal_the_loaded_split(tmp_path, split, source):
    from helpers import write_fake_cvc

    from elasticnet.data.build import split_sizes

    data = "synthetic" if source == "synthetic" else str(write_fake_cvc(tmp_path / "cvc"))
    dataset = "auto" if source == "synthetic" else source  # the CVC reader knows the frames' sequences
    cfg = DataConfig(data=data, dataset=dataset, image_size=[32, 32], synthetic_count=20, **split)
    loaded = build_datasets(cfg, 3, 0)
    expected = {"train": len(loaded.train), "val": len(loaded.val), "test": len(loaded.test or [])}
    assert split_sizes(cfg) == expected


def test_a_synthetic_set_that_cannot_fit_in_memory_is_refused_before_it_is_generated(monkeypatch):
    from elasticnet.data import build

    assert build.available_memory() > 2**20  # read from /proc/meminfo here
    monkeypatch.setattr(build, "available_memory", lambda: 2**30)  # 1 GiB free
    monkeypatch.setattr(build, "synthetic_polyp_set", lambda *a, **k: pytest.fail("generated anyway"))
    with pytest.raises(UserError, match=r"needs 4\.6 GiB of memory; 1\.0 GiB is available.*--synthetic-count"):
        build.load_all(DataConfig(synthetic_count=100_000, image_size=[96, 128]), 3)


def test_cache_memory_that_cannot_fit_is_refused_and_names_the_disk_cache(tmp_path, monkeypatch):
    from elasticnet.data import build

    root = write_folder_dataset(tmp_path / "d", count=4, size=(32, 32))
    monkeypatch.setattr(build, "available_memory", lambda: 2**28)
    with pytest.raises(UserError, match=r"--cache memory for 4 images at 8192x8192 needs 0\.5 GiB.*--cache disk"):
        build.load_all(DataConfig(data=str(root), image_size=[8192, 8192], cache="memory"), 1)
    assert len(build.load_all(DataConfig(data=str(root), image_size=[32, 32], cache="memory"), 1).images) == 4
