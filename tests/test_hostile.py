"""A generated hostile-user suite: every command fed bad options, malformed configs, crafted checkpoints,
edited bundles, broken images and file-system traps.

Each case must end in one clear error (exit status 2 and an ``error:`` line naming the problem; argparse's
own usage errors count) or succeed where the input is legitimate, never in a traceback, and must leave every
file it was given exactly as it was. The cases are generated from classes (every numeric option x bad values,
every command x every crafted file, ...), so a new option or command joins the suite by joining a table.
``pytest tests/test_hostile.py -s`` prints the tally: "N cases, N clear errors, 0 tracebacks, 0 files lost".
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import TINY, write_folder_dataset

from elasticnet.cli import main

# every numeric training option with values a user can mistype (each must be refused before a run folder exists)
BAD_NUMBERS = {
    "--lr": ["-1", "0", "nan", "inf", "abc"],
    "--weight-decay": ["-1", "nan"],
    "--epochs": ["0", "-3", "1.5"],
    "--batch-size": ["0", "-1"],
    "--base-width": ["0", "100000"],
    "--seed": ["-1", "x"],
    "--max-steps": ["-1"],
    "--calib-batches": ["0"],
    "--threshold": ["2", "0", "nan"],
    "--num-workers": ["-2"],
    "--val-fraction": ["1.5", "-0.1"],
    "--channel-multiple": ["-1"],
    "--image-size": ["0x0", "abc", "99999x32", "32"],
    "--depths": ["1", "0", "a,b"],
    "--widths": ["0", "1.5", "-0.5", "0.5"],
    "--std": ["0,0,0", "1,1"],
    "--mean": ["a,b,c"],
    "--grad-clip": ["-1"],
    "--ema-decay": ["1.5"],
    "--weight-smallest": ["-1"],
    "--folds": ["1"],
    "--fold": ["7", "-1"],  # folds is 0 (one split): a fold is a mistake, not ignored
    "--always-subnets": ["xx", "d4-w0.3"],
    "--subnet-weights": ["garbage", "d4-w0.5=-1"],
    "--eval-batch-size": ["-1"],
}
BAD_CONFIGS = {
    "binary": b"\x00\xff\xfe\x00garbage",
    "latin1": "model: {base_width: 8}  # caf\xe9".encode("latin-1"),
    "model-is-a-number": b"model: 5\n",
    "profiles-is-a-number": b"profiles: 5\n",
    "top-level-list": b"- 1\n- 2\n",
    "unknown-key": b"model: {bse_width: 8}\n",
    "wrong-type": b"train: {lr: fast}\n",
    "unclosed": b"model: {base_width: 8\n",
    "deep": b"a: " + b"[" * 500 + b"]" * 500 + b"\n",
    "unknown-profile": b"profiles: {cpu: {train: {epochs: 1}}}\n",
}


@dataclass
class Case:
    name: str
    argv: list[str]
    protect: list[Path] = field(default_factory=list)  # files and folders that must come out unchanged
    absent: list[Path] = field(default_factory=list)  # outputs a refused command must not leave behind
    ok: bool = False  # a legitimate input: must succeed
    check: Callable[[], str | None] | None = None  # more to verify afterwards: a problem, or None


def fingerprint(paths: list[Path]) -> dict[str, str]:
    """Content hash of every file under ``paths`` (links are not followed)."""
    out = {}
    for root in paths:
        items = [root] if not root.is_dir() or root.is_symlink() else sorted(p for p in root.rglob("*"))
        for p in items:
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif not p.exists():
                out[str(p)] = "absent"
    return out


def run_case(case: Case, capsys) -> tuple[str, str]:
    """(outcome, detail): outcome is clear | ok | traceback | unclear | accepted | failed | lost."""
    before = fingerprint(case.protect)
    try:
        code = main(case.argv)
    except SystemExit as e:  # argparse: usage and one error line
        code = e.code if isinstance(e.code, int) else 2
    except BaseException:
        capsys.readouterr()
        return "traceback", traceback.format_exc(limit=3)
    err = capsys.readouterr().err
    lost = [p for p, h in fingerprint(case.protect).items() if before.get(p) != h]
    left = [str(p) for p in case.absent if p.exists() or p.is_symlink()]
    if lost or left:
        return "lost", f"changed {lost}; left behind {left}"
    if "Traceback" in err:
        return "traceback", err[-800:]
    extra = case.check() if case.check else None
    if extra:
        return "failed", extra
    if case.ok:
        return ("ok", "") if code == 0 else ("failed", f"exit {code}: {err[-400:]}")
    if code == 0:
        return "accepted", "a bad input was accepted"
    if code != 2 or "error" not in err:
        return "unclear", f"exit {code}: {err[-400:]}"
    return "clear", ""


# ---- the workspace the cases attack ----


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    from elasticnet.export.export import export_subnet

    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    assert main(["train", *TINY, "--max-steps", "2", "--out", str(run)]) == 0
    bundle = export_subnet(run / "checkpoint.pt", 2, 0.5, "cpu", root / "bundle", echo=lambda s: None)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"ok{i}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    data = write_folder_dataset(root / "data", count=6, size=(32, 32))
    data_run = root / "data-run"  # a run trained on the folder data set
    assert main(["train", *TINY, "--max-steps", "1", "--data", str(data), "--out", str(data_run)]) == 0
    (root / "notes.txt").write_text("a user's own file")
    return {
        "root": root,
        "run": run,
        "bundle": bundle,
        "images": images,
        "data": data,
        "data_run": data_run,
        "notes": root / "notes.txt",
    }


def numeric_cases(ws: dict[str, Path]) -> list[Case]:
    cases = []
    for flag, values in BAD_NUMBERS.items():
        for value in values:
            out = ws["root"] / "num" / f"{flag[2:]}={value}"
            argv = ["train", *TINY, "--max-steps", "1", "--out", str(out)]
            if flag in argv:  # replace the suite's own value
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
            cases.append(Case(f"train {flag} {value}", argv, absent=[out]))
    return cases


def config_cases(ws: dict[str, Path]) -> list[Case]:
    cases = []
    for name, content in BAD_CONFIGS.items():
        path = ws["root"] / "configs" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        out = ws["root"] / "cfg-runs" / name
        profile = ["--profile", "gpu"] if name == "unknown-profile" else []
        cases.append(
            Case(
                f"train --config {name}",
                ["train", "--config", str(path), *profile, *TINY, "--max-steps", "1", "--out", str(out)],
                protect=[path],
                absent=[out],
            )
        )
    return cases


def _flip_a_weight_byte(good: bytes) -> bytes:
    """The checkpoint with one byte flipped in the middle of its largest tensor's data (a fixed offset can land
    on pickle bookkeeping, such as a memo index, that changes nothing the file loads as)."""
    import io
    import struct
    import zipfile

    largest = max(zipfile.ZipFile(io.BytesIO(good)).infolist(), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", good[largest.header_offset + 26 : largest.header_offset + 30])
    at = largest.header_offset + 30 + name_len + extra_len + largest.file_size // 2
    return good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :]


def crafted_checkpoints(ws: dict[str, Path]) -> dict[str, Path]:
    folder = ws["root"] / "crafted"
    folder.mkdir(exist_ok=True)
    good = (ws["run"] / "checkpoint.pt").read_bytes()
    marker = ws["root"] / "code-ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    files = {
        "random-bytes": np.random.default_rng(1).bytes(3000),
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "json": b'{"format": "elasticnet-checkpoint"}',
        "bare-pickle": pickle.dumps({"x": Evil()}),
        "flipped-byte": _flip_a_weight_byte(good),
    }
    out = {}
    for name, data in files.items():
        (folder / f"{name}.pt").write_bytes(data)
        out[name] = folder / f"{name}.pt"
    (folder / "a-folder.pt").mkdir(exist_ok=True)
    out["a-folder"] = folder / "a-folder.pt"
    import torch

    torch.save({"format": "elasticnet-checkpoint", "x": Evil()}, folder / "torch-pickle.pt")
    out["torch-pickle"] = folder / "torch-pickle.pt"
    out["missing"] = folder / "nothing-here.pt"
    return out


def checkpoint_cases(ws: dict[str, Path]) -> list[Case]:
    cases = []
    marker = ws["root"] / "code-ran"
    never_ran = lambda: "a crafted pickle ran code" if marker.exists() else None
    for name, path in crafted_checkpoints(ws).items():
        out = ws["root"] / "ck-out" / name
        commands = {
            "eval": ["eval", "--checkpoint", str(path)],
            "export": ["export", "--checkpoint", str(path), "--depth", "2", "--out", str(out / "export")],
            "info": ["info", str(path)],
            "profile": ["measure", "--checkpoint", str(path), "--repeats", "1", "--out", str(out / "profile")],
            "resume": ["train", "--resume", str(path)],
        }
        for command, argv in commands.items():
            cases.append(Case(f"{command} on a {name} checkpoint", argv, protect=[path], absent=[out], check=never_ran))
    return cases


def bundle_cases(ws: dict[str, Path]) -> list[Case]:
    """Edited model.json (with its stale hash, and with the hash recomputed as an attacker would)."""
    from elasticnet.site.bundle import DESCRIPTION_HASH, description_hash

    good = json.loads((ws["bundle"] / "model.json").read_text())
    edits: dict[str, Callable[[dict], None]] = {
        "threshold-text": lambda d: d["output"].__setitem__("threshold", "abc"),
        "threshold-nan": lambda d: d["output"].__setitem__("threshold", float("nan")),
        "std-zero": lambda d: d["input"].__setitem__("std", [0, 0, 0]),
        "no-input": lambda d: d.pop("input"),
        "huge-height": lambda d: d["input"].__setitem__("height", 10**9),
        "model-outside": lambda d: d.__setitem__("model_file", "../run/checkpoint.pt"),
        "model-absolute": lambda d: d.__setitem__("model_file", "/etc/passwd"),
        "no-model-hash": lambda d: d.pop("model_sha256"),
        "channels-text": lambda d: d["input"].__setitem__("channels", "three"),
    }
    cases = []
    for name, edit in edits.items():
        for rehash in (False, True):
            folder = ws["root"] / "bundles" / f"{name}{'-rehashed' if rehash else ''}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in ws["bundle"].iterdir():
                if f.is_file():
                    (folder / f.name).write_bytes(f.read_bytes())
            d = json.loads(json.dumps(good))
            edit(d)
            if rehash:
                d[DESCRIPTION_HASH] = description_hash(d)
            (folder / "model.json").write_text(json.dumps(d))
            out = ws["root"] / "pred-out" / folder.name
            cases.append(
                Case(
                    f"predict with {folder.name}",
                    ["predict", "--model", str(folder), str(ws["images"]), "--out", str(out)],
                    protect=[folder, ws["images"]],
                    absent=[out],
                )
            )
            cases.append(Case(f"info on {folder.name}", ["info", str(folder)], protect=[folder]))
    deep = ws["root"] / "bundles" / "deep-json"
    deep.mkdir(parents=True, exist_ok=True)
    (deep / "model.json").write_text("[" * 100000 + "]" * 100000)
    cases.append(
        Case(
            "predict with deeply nested JSON",
            ["predict", "--model", str(deep), str(ws["images"]), "--out", str(ws["root"] / "pred-out" / "deep")],
            protect=[deep],
        )
    )
    return cases


def image_cases(ws: dict[str, Path]) -> list[Case]:
    """Broken images among good ones: the bad ones are listed, the good ones still predicted."""

    def png_claiming(h: int, w: int) -> bytes:
        _ok, buf = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
        data = bytearray(buf.tobytes())
        data[16:24] = w.to_bytes(4, "big") + h.to_bytes(4, "big")  # IHDR width, height (CRC left stale)
        return bytes(data)

    _ok, buf = cv2.imencode(".png", np.full((40, 48, 3), 120, np.uint8))
    bad = {
        "huge-header.png": png_claiming(100000, 100000),
        "truncated.png": buf.tobytes()[:60],
        "random.png": np.random.default_rng(2).bytes(500),
        "empty.png": b"",
        "text.jpg": b"hello",
        "broken.dcm": b"\0" * 128 + b"DICM" + b"\xff" * 40,
        "not-dicom.dcm": b"hello",
    }
    cases = []
    for name, data in bad.items():
        folder = ws["root"] / "img-cases" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "good.png").write_bytes(buf.tobytes())
        (folder / name).write_bytes(data)
        out = ws["root"] / "img-out" / name

        def wrote_good(out=out) -> str | None:
            return None if (out / "masks" / "good.png").is_file() else "the good image was not predicted"

        cases.append(
            Case(
                f"predict a folder with {name}",
                ["predict", "--model", str(ws["bundle"]), str(folder), "--out", str(out)],
                protect=[folder],
                check=wrote_good,
            )
        )
    special = ws["root"] / "img-cases" / "special"
    special.mkdir(parents=True, exist_ok=True)
    (special / "good.png").write_bytes(buf.tobytes())
    (special / "folder.png").mkdir(exist_ok=True)
    if hasattr(os, "mkfifo") and not (special / "fifo.png").exists():
        os.mkfifo(special / "fifo.png")
    cases.append(
        Case(
            "predict a folder with a FIFO and a folder named like images",
            ["predict", "--model", str(ws["bundle"]), str(special), "--out", str(ws["root"] / "img-out" / "s")],
            protect=[special / "good.png"],
        )
    )
    return cases


def lone_checkpoint(ws: dict[str, Path]) -> Path:
    """A run's checkpoint copied into a user's folder beside the user's own subnets.csv."""
    folder = ws["root"] / "models"
    if not folder.is_dir():
        folder.mkdir()
        (folder / "model.pt").write_bytes((ws["run"] / "checkpoint.pt").read_bytes())
        (folder / "subnets.csv").write_text("a user's own notes\n")
    return folder / "model.pt"


def filesystem_cases(ws: dict[str, Path]) -> list[Case]:
    notes, root = ws["notes"], ws["root"]
    cases = [
        Case(
            "train --out an existing file", ["train", *TINY, "--max-steps", "1", "--out", str(notes)], protect=[notes]
        ),
        Case(
            "train --out inside a file",
            ["train", *TINY, "--max-steps", "1", "--out", str(notes / "run")],
            protect=[notes],
        ),
        Case(
            "export --out an existing file",
            ["export", "--checkpoint", str(ws["run"]), "--depth", "2", "--out", str(notes)],
            protect=[notes],
        ),
        Case(
            "predict --out an existing file",
            ["predict", "--model", str(ws["bundle"]), str(ws["images"]), "--out", str(notes)],
            protect=[notes, ws["images"]],
        ),
        *(
            Case(
                f"train --out {where} the data folder",
                ["train", *TINY, "--max-steps", "1", "--data", str(ws["data"]), "--out", str(out)],
                protect=[ws["data"]],
            )
            for where, out in (("=", ws["data"]), ("inside", ws["data"] / "images"), ("new, inside", ws["data"] / "x"))
        ),
        Case(
            "eval --recalibrate a checkpoint copied out of its run folder",
            ["eval", "--checkpoint", str(lone_checkpoint(ws)), "--recalibrate"],
            protect=[lone_checkpoint(ws).parent],
        ),
        Case(
            "measure --out inside the run's data folder",
            ["measure", "--checkpoint", str(ws["data_run"]), "--out", str(ws["data"] / "images")],
            protect=[ws["data"]],
        ),
        Case(
            "predict into its own input folder",
            ["predict", "--model", str(ws["bundle"]), str(ws["data"]), "--out", str(ws["data"])],
            protect=[ws["data"]],
        ),
        Case(
            "predict into the data's masks",
            ["predict", "--model", str(ws["bundle"]), str(ws["data"] / "images"), "--out", str(ws["data"])],
            protect=[ws["data"]],
        ),
        Case(
            "profile --out an existing file",
            ["measure", "--checkpoint", str(ws["run"]), "--out", str(notes)],
            protect=[notes],
        ),
        Case(
            "train --data that does not exist",
            ["train", *TINY, "--data", str(root / "nope"), "--out", str(root / "fs-run-1")],
            absent=[root / "fs-run-1"],
        ),
        Case(
            "train --data a file",
            ["train", *TINY, "--data", str(notes), "--out", str(root / "fs-run-2")],
            protect=[notes],
            absent=[root / "fs-run-2"],
        ),
        Case(
            "eval --data a folder without masks",
            ["eval", "--checkpoint", str(ws["run"]), "--data", str(ws["images"])],
            protect=[ws["images"]],
        ),
    ]
    # a folder holding a user's own files with the names a run writes: refused, the files kept
    for name in ("log.csv", "curve.png", "split.csv"):
        mine = root / f"user-folder-{name}"
        mine.mkdir(exist_ok=True)
        (mine / name).write_text("the user's own file")
        cases.append(
            Case(
                f"train --out a folder holding a user's {name}",
                ["train", *TINY, "--max-steps", "1", "--out", str(mine)],
                protect=[mine / name],
                absent=[mine / "checkpoint.pt", mine / "config.yaml"],
            )
        )
    # a planted link where the run's lock goes must not be followed (the file it points to is the user's)
    trap = root / "trap-run"
    trap.mkdir(exist_ok=True)
    if not (trap / ".lock").is_symlink():
        (trap / ".lock").symlink_to(notes)
    cases.append(
        Case(
            "train into a folder whose .lock links to a user's file",
            ["train", *TINY, "--max-steps", "1", "--out", str(trap)],
            protect=[notes],
        )
    )
    # re-exporting keeps a site's own files in the bundle folder
    site = root / "site-bundle"
    assert (
        main(["export", "--checkpoint", str(ws["run"]), "--depth", "2", "--target", "torch", "--out", str(site)]) == 0
    )
    (site / "site-notes.txt").write_text("calibrated on our scanner")
    cases.append(
        Case(
            "re-export into a bundle folder with a site's notes",
            ["export", "--checkpoint", str(ws["run"]), "--depth", "2", "--target", "torch", "--out", str(site)],
            protect=[site / "site-notes.txt"],
            ok=True,
        )
    )
    return cases


def data_cases(ws: dict[str, Path]) -> list[Case]:
    """Data folders a user might point at: broken group tables, mini-MIAS annotations, odd layouts."""
    root, cases = ws["root"] / "data-cases", []

    def folder(name: str) -> Path:
        return write_folder_dataset(root / name, count=6, size=(32, 32))

    groups = {"binary": b"\x00\xff\xfe\x00", "one-column": b"name\n1\n2\n", "empty": b""}
    for name, content in groups.items():
        data = folder(f"groups-{name}")
        (data / "groups.csv").write_bytes(content)
        cases.append(
            Case(
                f"train --split grouped with a {name} groups.csv",
                [
                    "train",
                    *TINY,
                    "--data",
                    str(data),
                    "--split",
                    "grouped",
                    "--max-steps",
                    "1",
                    "--out",
                    str(root / "out" / name),
                ],
                protect=[data],
                absent=[root / "out" / name],
            )
        )
    infos = {
        "huge-radius": "mdb001 G CIRC B 20 10 99999999999\n",
        "no-rows": "nothing here\n",
        "binary": "\x00\x01\x02",
    }
    for name, info in infos.items():
        mias = root / f"mias-{name}"
        mias.mkdir(parents=True, exist_ok=True)
        (mias / "Info.txt").write_text(info)
        cv2.imwrite(str(mias / "mdb001.png"), np.zeros((64, 64), np.uint8))
        cases.append(
            Case(
                f"train on mini-MIAS with Info.txt {name}",
                [
                    "train",
                    *TINY,
                    "--data",
                    str(mias),
                    "--in-channels",
                    "1",
                    "--max-steps",
                    "1",
                    "--out",
                    str(root / "out" / f"mias-{name}"),
                ],
                protect=[mias],
                absent=[root / "out" / f"mias-{name}"],
            )
        )
    for cache in ("memory", "disk"):  # masks saved as a 0/100 label map read as empty: nothing to learn
        labels = folder(f"label-map-{cache}")
        for mask in (labels / "masks").iterdir():
            cv2.imwrite(str(mask), np.where(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 0, 100, 0).astype(np.uint8))
        out = root / "out" / f"label-map-{cache}"
        cases.append(
            Case(
                f"train on masks that mark no lesion (cache {cache})",
                ["train", *TINY, "--data", str(labels), "--cache", cache, "--out", str(out)],
                protect=[labels],
                absent=[out],
            )
        )
    grown, grown_run = folder("grown"), root / "out" / "grown-run"  # images added after training
    if not grown_run.exists():
        assert main(["train", *TINY, "--max-steps", "1", "--data", str(grown), "--out", str(grown_run)]) == 0
        for part in ("images", "masks"):
            shutil.copy(grown / part / "1.png", grown / part / "100.png")
    cases.append(
        Case(
            "eval a run's validation split after images were added to its data",
            ["eval", "--checkpoint", str(grown_run)],
            protect=[grown, grown_run],
        )
    )
    grown_int8 = root / "out" / "grown-int8"
    cases.append(
        Case(
            "export --int8 (calibrated on the run's split) after images were added to its data",
            ["export", "--checkpoint", str(grown_run), "--depth", "2", "--int8", "--out", str(grown_int8)],
            protect=[grown, grown_run],
            absent=[grown_int8],
        )
    )
    gone, gone_run = folder("gone"), root / "out" / "gone-run"  # the data folder moved after training
    if not gone_run.exists():
        assert main(["train", *TINY, "--max-steps", "1", "--data", str(gone), "--out", str(gone_run)]) == 0
        gone.rename(root / "gone-moved")
    cases.append(
        Case(
            "eval a run's validation split after its data folder moved",
            ["eval", "--checkpoint", str(gone_run)],
            protect=[root / "gone-moved", gone_run],
        )
    )
    empty = root / "empty-images"
    (empty / "images").mkdir(parents=True, exist_ok=True)
    (empty / "masks").mkdir(exist_ok=True)
    cases.append(
        Case(
            "train on a folder without images",
            ["train", *TINY, "--data", str(empty), "--out", str(root / "out" / "empty")],
            absent=[root / "out" / "empty"],
        )
    )
    loop = root / "loop"
    loop.mkdir(exist_ok=True)
    if not (loop / "images").is_symlink():
        (loop / "images").symlink_to(loop / "images")  # a link to itself
    (loop / "masks").mkdir(exist_ok=True)
    cases.append(
        Case(
            "train on a folder whose images/ is a symlink loop",
            ["train", *TINY, "--data", str(loop), "--out", str(root / "out" / "loop")],
            absent=[root / "out" / "loop"],
        )
    )
    return cases


def tune_cases(ws: dict[str, Path]) -> list[Case]:
    """Search spaces with bad bounds: refused before any trial, the config file untouched."""
    root, cases = ws["root"] / "tune-cases", []
    root.mkdir(exist_ok=True)
    spaces = {
        "text-bound": "search:\n  lr: {type: float, low: abc, high: 0.01}\n",
        "low-above-high": "search:\n  lr: {type: float, low: 0.1, high: 0.01}\n",
        "unknown-key": "search:\n  learning_rate: {type: float, low: 0.001, high: 0.01}\n",
        "bad-type": "search:\n  lr: {type: complex, low: 0.001, high: 0.01}\n",
        "not-a-mapping": "search: 5\n",
    }
    for name, text in spaces.items():
        path = root / f"{name}.yaml"
        path.write_text(text)
        cases.append(
            Case(
                f"tune with a search space with {name}",
                [
                    "tune",
                    "--config",
                    str(path),
                    "--study",
                    name,
                    "--storage",
                    str(root / f"{name}.log"),
                    "--trials",
                    "1",
                    "--tune-out",
                    str(root / "out" / name),
                ],
                protect=[path],
                absent=[root / "out" / name, root / f"{name}.log"],
            )
        )
    space = root / "good-space.yaml"
    space.write_text("search:\n  lr: {type: float, low: 0.001, high: 0.01}\n")
    cases.append(
        Case(
            "tune --tune-out inside the data folder",
            [
                "tune",
                "--config",
                str(space),
                "--data",
                str(ws["data"]),
                "--study",
                "in-data",
                "--storage",
                str(root / "in-data.log"),
                "--trials",
                "1",
                "--tune-out",
                str(ws["data"] / "tune"),
            ],
            protect=[space, ws["data"]],
            absent=[root / "in-data.log"],
        )
    )
    cases.append(  # a data set every trial would refuse: refused once, before the study exists
        Case(
            "tune --split grouped on a folder without groups",
            [
                "tune",
                "--config",
                str(space),
                "--data",
                str(ws["data"]),
                "--split",
                "grouped",
                "--study",
                "no-groups",
                "--storage",
                str(root / "no-groups.log"),
                "--trials",
                "1",
                "--tune-out",
                str(root / "out" / "no-groups"),
            ],
            protect=[space, ws["data"]],
            absent=[root / "no-groups.log", root / "out" / "no-groups"],
        )
    )
    return cases


def test_hostile_inputs_give_one_clear_error_and_lose_no_file(workspace, capsys):
    cases = (
        data_cases(workspace)
        + tune_cases(workspace)
        + numeric_cases(workspace)
        + config_cases(workspace)
        + checkpoint_cases(workspace)
        + bundle_cases(workspace)
        + image_cases(workspace)
        + filesystem_cases(workspace)
    )
    tally: dict[str, int] = {}
    failures = []
    for case in cases:
        outcome, detail = run_case(case, capsys)
        tally[outcome] = tally.get(outcome, 0) + 1
        if outcome not in ("clear", "ok"):
            failures.append(f"{case.name}: {outcome}: {detail}")
    with capsys.disabled():
        print(
            f"\n{len(cases)} cases, {tally.get('clear', 0)} clear errors, {tally.get('ok', 0)} legitimate inputs "
            f"accepted, {tally.get('traceback', 0)} tracebacks, {tally.get('lost', 0)} files lost, "
            f"{tally.get('accepted', 0) + tally.get('unclear', 0) + tally.get('failed', 0)} other failures"
        )
    assert not failures, "\n".join(failures)
