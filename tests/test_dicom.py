"""DICOM films as a PACS sends them, generated here: bit depths, rescale, windows, MONOCHROME1, compressed
transfer syntaxes this install cannot decode, multi-frame files; read by the readers, eval and the site."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid  # noqa: E402

from elasticnet.data.imageio import declared_size, read_image  # noqa: E402

MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", syntax=ExplicitVRLittleEndian, **attributes
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MG, meta.MediaStorageSOPInstanceUID, "MG"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        bits,
        attributes.pop("bits", bits),
        bits - 1,
        0,
    )
    for key, value in attributes.items():
        setattr(ds, key, value)
    if syntax.is_compressed:  # a codestream as a PACS would send it (the bytes need not be valid)
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + pixels.tobytes()[:64]])
    else:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(height: int = 32, width: int = 48, high: int = 4095) -> np.ndarray:
    return np.tile(np.linspace(0, high, width), (height, 1)).astype(np.uint16)


def test_a_12_bit_film_is_scaled_over_its_range_and_keeps_its_orientation(tmp_path):
    image = read_image(write_dicom(tmp_path / "a.dcm", ramp(), bits=12))
    assert image.dtype == np.uint8 and image.shape == (32, 48)
    assert image[0, 0] == 0 and image[0, -1] == 255 and np.all(np.diff(image[0].astype(int)) >= 0)
    assert declared_size(tmp_path / "a.dcm") == (32, 48)


def test_monochrome1_is_inverted_so_lesions_are_bright(tmp_path):
    two = read_image(write_dicom(tmp_path / "m2.dcm", ramp()))
    one = read_image(write_dicom(tmp_path / "m1.dcm", ramp(), photometric="MONOCHROME1"))
    assert np.array_equal(one, 255 - two)


def test_the_files_window_and_rescale_are_applied(tmp_path):
    pixels = ramp(high=1000)
    # modality values = 2 * stored - 100; window 400 +- 200 (linear): values <= 200 black, >= 600 white
    image = read_image(
        write_dicom(
            tmp_path / "w.dcm", pixels, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=400, WindowWidth=400
        )
    )
    modality = 2 * pixels[0].astype(float) - 100
    assert np.all(image[0][modality <= 200] == 0) and np.all(image[0][modality >= 600] == 255)
    middle = (modality > 250) & (modality < 550)
    assert middle.any() and np.all((image[0][middle] > 0) & (image[0][middle] < 255))


def test_a_compressed_syntax_without_its_decoder_names_the_fix(tmp_path):
    path = write_dicom(tmp_path / "j2k.dcm", ramp(), syntax=JPEG2000Lossless)
    try:
        read_image(path)
    except ValueError as e:  # no decoder plug-in in this install: the message says what to do
        assert "JPEG 2000" in str(e) and ("pylibjpeg" in str(e) or "convert" in str(e)), str(e)
    else:  # a decoder is installed (pylibjpeg): the bytes are not JPEG 2000 and must still fail
        pytest.fail("raw bytes labelled JPEG 2000 were decoded")


def test_multi_frame_and_oversized_and_broken_files_are_refused_by_name(tmp_path, monkeypatch):
    frames = write_dicom(tmp_path / "tomo.dcm", np.concatenate([ramp(), ramp()]), NumberOfFrames=2)
    with pytest.raises(ValueError, match="frames"):
        read_image(frames)
    monkeypatch.setenv("ELASTICNET_MAX_PIXELS", "1000")
    with pytest.raises(ValueError, match="more than the limit"):
        read_image(write_dicom(tmp_path / "big.dcm", ramp()))
    monkeypatch.delenv("ELASTICNET_MAX_PIXELS")
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(ValueError):
        read_image(tmp_path / "junk.dcm")


def test_a_folder_of_dicom_films_trains_evaluates_and_predicts(tmp_path):
    """images/*.dcm with PNG masks: the generic reader, eval --data and the site's predict read them."""
    import cv2

    from elasticnet.cli import main

    data = tmp_path / "films"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        film = (rng.random((32, 32)) * 3000).astype(np.uint16)
        mask = np.zeros((32, 32), np.uint8)
        cv2.circle(mask, (16, 16), 5, 255, -1)
        film[mask > 0] += 1000
        write_dicom(data / "images" / f"{i}.dcm", film, bits=12, photometric="MONOCHROME1" if i % 2 else "MONOCHROME2")
        cv2.imwrite(str(data / "masks" / f"{i}.png"), mask)
    run = tmp_path / "run"
    common = [
        "--base-width",
        "4",
        "--depths",
        "2",
        "--widths",
        "1",
        "--image-size",
        "32x32",
        "--in-channels",
        "1",
        "--batch-size",
        "4",
        "--calib-batches",
        "1",
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--quiet",
    ]
    assert main(["train", "--data", str(data), *common, "--max-steps", "2", "--out", str(run)]) == 0
    assert main(["eval", "--checkpoint", str(run), "--data", str(data)]) == 0
    assert main(["export", "--checkpoint", str(run), "--depth", "2", "--out", str(tmp_path / "bundle")]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(tmp_path / "bundle"), str(data / "images"), "--out", str(out)]) == 0
    assert len(list((out / "masks").glob("*.png"))) == 8


@pytest.mark.slow
def test_converted_films_at_2048x1280_train_on_patches_and_predict_whole(tmp_path):
    """The generic images/ + masks/ path at the size of CBIS-DDSM / INbreast conversions (2048x1280, 16-bit
    grey PNG): trained on patches, evaluated by sliding windows, predicted whole by the site runtime."""
    import warnings

    import cv2

    from elasticnet.cli import main

    data = tmp_path / "films"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        film = np.zeros((2048, 1280), np.uint16)
        cv2.ellipse(film, (0, 1024), (900, 1000), 0, -90, 90, 30000, -1)  # the breast against a black background
        film = (film + rng.integers(0, 2000, film.shape)).astype(np.uint16)
        mask = np.zeros((2048, 1280), np.uint8)
        cv2.circle(mask, (300 + 100 * i, 900 + 50 * i), 60, 255, -1)
        film[mask > 0] += 15000
        cv2.imwrite(str(data / "images" / f"film{i}.png"), film)
        cv2.imwrite(str(data / "masks" / f"film{i}.png"), mask)
    run = tmp_path / "run"
    common = ["--base-width", "4", "--depths", "2,3", "--widths", "0.5,1", "--in-channels", "1", "--quiet"]
    flags = ["--image-size", "2048x1280", "--patch-size", "256x256", "--patch-tissue-threshold", "0.1"]
    flags += ["--batch-size", "2", "--calib-batches", "1", "--mean", "0.2", "--std", "0.25", "--val-fraction", "0.25"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*grayscale.*")  # no colour jitter on grey films (the grey pipeline)
        assert main(["train", "--data", str(data), *common, *flags, "--max-steps", "2", "--out", str(run)]) == 0
    assert (run / "subnets.csv").is_file()
    assert main(["eval", "--checkpoint", str(run), "--data", str(data), "--lesion-detection"]) == 0
    bundle = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(run), "--depth", "3", "--out", str(bundle)]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(bundle), str(data / "images"), "--out", str(out)]) == 0
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 4 and all(cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape == (2048, 1280) for m in masks)
