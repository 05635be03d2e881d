"""CVC-ClinicDB and mini-MIAS readers on files the tests write, splits, patches, sliding windows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from helpers import write_folder_dataset

from elasticnet.cli.evaluate import eval_loader
from elasticnet.config import DataConfig, RunConfig
from elasticnet.data.build import build_datasets, dataset_kind, load_all, split_sizes
from elasticnet.data.cvc import SEQUENCE_STARTS, find_cvc, sequence_of
from elasticnet.data.dataset import PatchDataset, SegmentationDataset
from elasticnet.data.imageio import read_image
from elasticnet.data.mias import find_mias, parse_info, patient_of
from elasticnet.data.records import decode, load_records
from elasticnet.data.splits import assign_split
from elasticnet.errors import UserError
from elasticnet.sliding_window import sliding_window

RNG = np.random.default_rng(0)


def write_quirky_tiff(path: Path, rgb: np.ndarray) -> None:
    """An RGB TIFF that declares photometric min-is-black with 3 samples, like the official CVC frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rgb, photometric="minisblack", planarconfig="contig")


def write_cvc_official(root: Path, ids=(1, 2, 26, 27, 612)) -> dict[int, np.ndarray]:
    frames = {}
    (root / "Ground Truth").mkdir(parents=True, exist_ok=True)
    for i in ids:
        rgb = RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        gt = np.zeros((32, 48), np.uint8)
        gt[8:20, 10:30] = 255
        gt[0:3, 0:3] = 12  # faint non-binary values outside the polyp, as in the real ground truth
        gt[30, 40] = 200
        write_quirky_tiff(root / "Original" / f"{i}.tif", rgb)
        tifffile.imwrite(root / "Ground Truth" / f"{i}.tif", gt)
        frames[i] = rgb
    return frames


def test_quirky_tiff_is_read_as_rgb(tmp_path):
    rgb = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    write_quirky_tiff(tmp_path / "x.tif", rgb)
    assert cv2.imread(str(tmp_path / "x.tif"), cv2.IMREAD_UNCHANGED).ndim == 2  # OpenCV loses the colour
    assert np.array_equal(read_image(tmp_path / "x.tif"), rgb)


def test_cvc_sequence_table():
    assert len(SEQUENCE_STARTS) == 29
    assert [sequence_of(i) for i in (1, 25, 26, 50, 51, 591, 592, 612)] == [1, 1, 2, 2, 3, 28, 29, 29]
    with pytest.raises(ValueError):
        sequence_of(613)


def test_cvc_official_layout(tmp_path):
    frames = write_cvc_official(tmp_path / "cvc")
    records = find_cvc(tmp_path / "cvc")
    assert [(r.name, r.group) for r in records] == [
        ("1", "seq01"),
        ("2", "seq01"),
        ("26", "seq02"),
        ("27", "seq02"),
        ("612", "seq29"),
    ]
    image, mask = decode(records[0], 3)
    assert np.array_equal(image, frames[1])
    assert set(np.unique(mask)) == {0, 255} and mask[0, 0] == 0 and mask[30, 40] == 255 and mask[10, 15] == 255
    assert dataset_kind(DataConfig(data=str(tmp_path / "cvc"))) == "cvc-clinicdb"


def test_cvc_png_layout_needs_ids(tmp_path):
    from helpers import write_folder_dataset

    root = write_folder_dataset(tmp_path / "png", count=3)
    assert [r.group for r in find_cvc(root)] == ["seq01"] * 3
    (root / "images" / "frame.png").write_bytes((root / "images" / "1.png").read_bytes())
    (root / "masks" / "frame.png").write_bytes((root / "masks" / "1.png").read_bytes())
    with pytest.raises(UserError, match="named by frame id"):
        find_cvc(root)


def write_pgm(path: Path, image: np.ndarray) -> None:
    h, w = image.shape
    path.write_bytes(f"P5\n# test\n{w} {h}\n255\n".encode() + image.tobytes())


INFO = """MIAS header text that the parser must skip
mdb001 G CIRC B 20 10 5
mdb002 G NORM
mdb003 D CALC M 40 40 3
mdb004 F SPIC M 10 50 4
mdb004 F MISC B 50 12 6
mdb005 F CIRC B
mdb006 D NORM \r
"""


def write_mias(root: Path, layout: str = "pgm") -> None:
    root.mkdir(parents=True)
    (root / "Info.txt").write_text(INFO)
    folder = root / "images" if layout == "png" else root
    folder.mkdir(exist_ok=True)
    for i in range(1, 7):
        image = RNG.integers(0, 256, (64, 64), dtype=np.uint8)
        if layout == "png":
            cv2.imwrite(str(folder / f"mdb{i:03d}.png"), image)
        else:
            write_pgm(folder / f"mdb{i:03d}.pgm", image)


@pytest.mark.parametrize("layout", ["pgm", "png"])
def test_mias_masks_from_info(tmp_path, layout):
    write_mias(tmp_path / "mias", layout)
    records = find_mias(tmp_path / "mias")
    assert [r.name for r in records] == [f"mdb{i:03d}" for i in range(1, 7)]
    assert [r.group for r in records] == [
        "patient001",
        "patient001",
        "patient002",
        "patient002",
        "patient003",
        "patient003",
    ]
    masks = {r.name: decode(r, 1)[1] for r in records}
    # mdb001: centre column 20, 10 rows from the bottom -> row 63 - 10 = 53, radius 5
    assert masks["mdb001"][53, 20] == 255 and masks["mdb001"][53, 26] == 0 and masks["mdb001"][10, 20] == 0
    assert (masks["mdb001"] > 0).sum() == pytest.approx(np.pi * 25, rel=0.25)
    assert masks["mdb002"].max() == 0 and masks["mdb003"].max() == 0  # normal; calcification is not a mass
    assert masks["mdb004"][63 - 50, 10] == 255 and masks["mdb004"][63 - 12, 50] == 255  # two masses
    assert masks["mdb005"].max() == 0  # a mass without coordinates cannot be drawn ...
    assert [r.name for r in records if r.unlocated] == ["mdb005"]  # ... so the film is marked, not called normal
    all_classes = {r.name: decode(r, 1)[1] for r in find_mias(tmp_path / "mias", "all")}
    assert all_classes["mdb003"][63 - 40, 40] == 255
    assert dataset_kind(DataConfig(data=str(tmp_path / "mias"))) == "mini-mias"


def test_film_with_an_unlocated_mass_keeps_its_part_but_is_neither_trained_nor_scored(tmp_path):
    write_mias(tmp_path / "mias")
    cfg = DataConfig(data=str(tmp_path / "mias"), image_size=(32, 32), split="random", val_fraction=0.34, folds=3)
    for fold in range(3):
        split = build_datasets(dataclasses.replace(cfg, fold=fold), 1, seed=0)
        used = [n for part in (split.train, split.val, split.test) for n in part.names]
        assert sorted(used) == ["mdb001", "mdb002", "mdb003", "mdb004", "mdb006"]  # mdb005 in none of them
        assert [r["name"] for r in split.rows] == [f"mdb{i:03d}" for i in range(1, 7)]  # the split is unchanged
        assert split.left_out == ("mdb005",)  # and a run says so in its first line
        sizes = split_sizes(dataclasses.replace(cfg, fold=fold))
        assert sizes == {"train": len(split.train), "val": len(split.val), "test": len(split.test)}
    everything = load_all(cfg, 1)
    assert everything.unlocated == {"mdb005"} and "mdb005" not in everything.subset(everything.located()).names
    loader, what = eval_loader(RunConfig(data=cfg), str(tmp_path / "mias"), 2)  # `elasticnet eval --data`
    assert "mdb005" not in loader.dataset.names and len(loader.dataset) == 5 and "left out" in what


def test_mias_parser_and_errors(tmp_path):
    write_mias(tmp_path / "mias")
    rows = parse_info(tmp_path / "mias" / "Info.txt")
    assert len(rows) == 7 and rows[4].cls == "MISC" and rows[4].radius == 6
    assert patient_of("mdb321") == patient_of("mdb322") == "patient161"
    (tmp_path / "mias" / "mdb003.pgm").unlink()
    with pytest.raises(UserError, match="no image file"):
        find_mias(tmp_path / "mias")
    with pytest.raises(UserError, match=r"Info.txt is missing"):
        find_mias(tmp_path)


def test_corrupt_files_are_all_reported_by_name(tmp_path):
    frames = write_cvc_official(tmp_path / "cvc")
    data = (tmp_path / "cvc" / "Original" / "1.tif").read_bytes()
    (tmp_path / "cvc" / "Original" / "1.tif").write_bytes(data[:200])  # truncated TIFF
    (tmp_path / "cvc" / "Original" / "2.tif").write_bytes(RNG.bytes(500))  # random bytes
    tifffile.imwrite(tmp_path / "cvc" / "Ground Truth" / "26.tif", np.zeros((10, 10), np.uint8))  # wrong size
    with pytest.raises(UserError) as e:
        load_records(find_cvc(tmp_path / "cvc"), 3, (32, 48), tmp_path / "cvc")
    message = str(e.value)
    assert "3 problem(s)" in message and "1.tif: unreadable" in message and "2.tif: unreadable" in message
    assert "26.tif: image is 48x32 but its mask" in message and len(frames) == 5


def test_truncated_pgm_is_reported(tmp_path):
    write_mias(tmp_path / "mias")
    path = tmp_path / "mias" / "mdb002.pgm"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=r"mdb002.pgm: unreadable"):
        load_records(find_mias(tmp_path / "mias"), 1, (32, 32))


# --- splits ----------------------------------------------------------------------------------------------

GROUPS = [f"g{i // 4}" for i in range(40)]  # 10 groups of 4 images


@pytest.mark.parametrize("method", ["random", "grouped"])
def test_split_is_reproducible(method):
    a = assign_split(GROUPS, method, 0.2, 0.2, seed=3)
    assert a == assign_split(GROUPS, method, 0.2, 0.2, seed=3)
    assert a != assign_split(GROUPS, method, 0.2, 0.2, seed=4)
    assert {p: a.count(p) for p in ("train", "val", "test")} == {"train": 24, "val": 8, "test": 8}


def test_grouped_split_keeps_groups_together():
    parts = assign_split(GROUPS, "grouped", 0.2, 0.2, seed=0)
    for g in set(GROUPS):
        assert len({p for p, q in zip(parts, GROUPS) if q == g}) == 1, g


@pytest.mark.parametrize("method", ["random", "grouped"])
def test_k_fold_tests_every_image_once(method):
    groups = [f"g{i}" for i in range(7) for _ in range(i + 1)]  # unequal groups
    tested = np.zeros(len(groups), int)
    for fold in range(4):
        parts = assign_split(groups, method, 0.1, 0.0, seed=1, folds=4, fold=fold)
        tested += np.array([p == "test" for p in parts])
        assert "train" in parts and "val" in parts
        if method == "grouped":
            for g in set(groups):
                assert len({p for p, q in zip(parts, groups) if q == g}) == 1
    assert (tested == 1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "grouped", "test_fraction": 0.2, "groups": ["a", "a", "b"]}, "at least 3 groups"),
        ({"method": "x"}, "unknown split"),
        ({"folds": 1}, "folds must be 0"),
        ({"folds": 3, "fold": 3}, "fold must lie in 0..2"),
    ],
)
def test_split_errors(kwargs, message):
    groups = kwargs.pop("groups", GROUPS)
    with pytest.raises(UserError, match=message):
        assign_split(groups, **kwargs)


def test_real_mias_split_keeps_patients_together(tmp_path):
    write_mias(tmp_path / "mias")
    cfg = DataConfig(
        data=str(tmp_path / "mias"), image_size=[32, 32], split="grouped", val_fraction=0.3, mean=[0.5], std=[0.25]
    )
    split = build_datasets(cfg, 1, 0)
    by_patient: dict[str, set] = {}
    for row in split.rows:
        by_patient.setdefault(row["group"], set()).add(row["split"])
    assert all(len(parts) == 1 for parts in by_patient.values())


# --- caching, patches, sliding window ------------------------------------------------------------------


def test_disk_cache_equals_memory_cache(tmp_path):
    write_cvc_official(tmp_path / "cvc")
    memory = load_all(DataConfig(data=str(tmp_path / "cvc"), image_size=[16, 32], cache="memory"), 3)
    disk = load_all(DataConfig(data=str(tmp_path / "cvc"), image_size=[16, 32], cache="disk"), 3)
    assert not isinstance(disk.images, list)
    for i in range(len(memory)):
        assert np.array_equal(memory.images[i], disk.images[i]) and np.array_equal(memory.masks[i], disk.masks[i])
    sub = disk.subset([3, 1])
    assert np.array_equal(sub.images[0], memory.images[3]) and sub.names == [memory.names[3], memory.names[1]]


def test_patches_have_the_patch_size_and_find_lesions():
    cfg = DataConfig(
        image_size=[64, 64],
        synthetic_count=8,
        val_fraction=0.25,
        augment="none",
        patch_size=[16, 16],
        patch_lesion_fraction=1.0,
    )
    split = build_datasets(cfg, 3, 0)
    assert isinstance(split.train, PatchDataset)
    hits = 0
    for i in range(len(split.train)):
        image, mask = split.train[i]
        assert image.shape == (3, 16, 16) and mask.shape == (1, 16, 16)
        hits += int(mask.sum() > 0)
    assert hits == len(split.train)


def _films(count: int, lesion_films: int) -> SegmentationDataset:
    """64x64 grey 'films': tissue (bright) on the left half, black background on the right; the first
    ``lesion_films`` hold a 6x6 lesion at rows/cols 40-45 of the tissue."""
    images, masks = [], []
    for k in range(count):
        image = np.zeros((64, 64), np.uint8)
        image[:, :32] = 120
        mask = np.zeros((64, 64), np.uint8)
        if k < lesion_films:
            mask[40:46, 10:16] = 255
        images.append(image)
        masks.append(mask)
    return SegmentationDataset(images, masks, [f"f{k}" for k in range(count)], [0.0], [1.0])


@pytest.mark.parametrize("fraction", [0.0, 0.25, 1.0])
def test_lesion_patches_make_up_their_share_however_rare_the_lesion_films(fraction):
    # 1 film of 20 has a lesion: lesion-centred patches must still be `fraction` of all patches
    patches = PatchDataset(_films(20, 1), [16, 16], lesion_fraction=fraction)
    keys = [(i, 1000 * epoch + i) for epoch in range(20) for i in range(20)]  # one seed per item, as in training
    hits = [float(patches[key][1].sum() > 0) for key in keys]
    assert abs(np.mean(hits) - fraction) < 0.06
    again = [float(patches[key][1].sum() > 0) for key in keys]
    assert again == hits  # a crop is a function of (index, seed)


def test_other_patches_centre_on_tissue_when_asked():
    films = _films(10, 0)
    anywhere = PatchDataset(films, [16, 16], lesion_fraction=0.5)
    tissue = PatchDataset(films, [16, 16], lesion_fraction=0.5, tissue_threshold=0.1)
    share = lambda ds: np.mean([float(ds[(i, 100 * s + i)][0].max() > 0) for i in range(10) for s in range(30)])
    assert share(tissue) == 1.0  # centred on tissue (jittered by a quarter patch): always holds some
    assert share(anywhere) < 0.8  # a patch anywhere often holds background only


def test_sliding_window_equals_whole_image_when_the_window_covers_it(tiny_elastic):
    from elasticnet.models import SubNet

    model = tiny_elastic.eval()
    x = torch.randn(2, 3, 32, 48)
    predict = lambda t: model(t, SubNet(3, 1.0))
    with torch.no_grad():
        whole = predict(x)
    assert torch.equal(sliding_window(predict, x, (32, 48)), whole)
    assert torch.equal(sliding_window(predict, x, (64, 64)), whole)
    tiled = sliding_window(predict, x, (16, 16), overlap=0.5)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()


def test_sliding_window_blends_a_constant_exactly():
    """Tiles of a position-independent predictor must blend back to the same constant everywhere."""
    x = torch.zeros(1, 1, 40, 56)
    out = sliding_window(lambda t: torch.full_like(t, 3.0), x, (16, 16), overlap=0.25)
    assert torch.allclose(out, torch.full_like(x, 3.0))


def test_lzw_tiff_falls_back_to_opencv(tmp_path):
    """OpenCV writes LZW-compressed TIFFs, which tifffile cannot decode without imagecodecs."""
    image = RNG.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "lzw.tif"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif"), image)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_mask_painted_on_a_transparent_layer_is_the_painted_lesion(tmp_path, suffix):
    """RGBA masks from an annotation tool: the lesion opaque white, the rest transparent, whose colour may be
    white too. The mask is the painted lesion (the layer over black), never the whole frame; an RGBA image
    keeps its colours (the alpha channel is dropped)."""
    from elasticnet.data.build import find_records

    data = write_folder_dataset(tmp_path / "d", count=2, size=(20, 30))
    lesion = np.zeros((20, 30), bool)
    lesion[4:9, 6:15] = True
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., :3] = 255  # transparent white outside the lesion
    rgba[..., 3] = np.where(lesion, 255, 0)
    photo = np.zeros((20, 30, 4), np.uint8)
    photo[..., 0], photo[..., 3] = 200, 255  # blue in OpenCV's BGRA order
    for name in ("1", "2"):
        (data / "masks" / f"{name}.png").unlink()
        if suffix == ".png":
            cv2.imwrite(str(data / "masks" / f"{name}.png"), rgba[..., [2, 1, 0, 3]])
        else:
            tifffile.imwrite(data / "masks" / f"{name}.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    (data / "images" / "1.png").unlink()
    cv2.imwrite(str(data / "images" / "1.png"), photo)
    records = {r.name: r for r in find_records(DataConfig(data=str(data)))}
    for name in ("1", "2"):
        image, mask = decode(records[name], 3)
        assert np.array_equal(mask > 127, lesion)
    assert image.shape == (20, 30, 3)
    assert decode(records["1"], 3)[0][0, 0].tolist() == [0, 0, 200]  # RGB
