"""Export: ONNX equals PyTorch, the PyTorch file needs no elastic code, bundles describe themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import DEPTHS, WIDTHS

from elasticnet.errors import UserError
from elasticnet.export.onnx_export import check_onnx, export_onnx, onnx_session
from elasticnet.export.torch_export import load_unet, save_unet
from elasticnet.models import SubNet, extract
from elasticnet.site.bundle import read_description


@pytest.mark.parametrize("subnet", [SubNet(d, w) for d in DEPTHS for w in (min(WIDTHS), 1.0)], ids=lambda s: s.key)
def test_onnx_output_equals_pytorch(tiny_elastic, tmp_path, subnet):
    static = extract(tiny_elastic.eval(), subnet)
    path = export_onnx(static, tmp_path / "m.onnx", (16, 24))
    assert check_onnx(static, path, (16, 24)) <= 1e-4
    # dynamic batch and size: another size divisible by 2**(depth-1) runs too
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 16)).astype(np.float32)
    with torch.no_grad():
        expected = static(torch.from_numpy(x)).numpy()
    got = onnx_session(path).run(["logits"], {"image": x})[0]
    assert np.abs(got - expected).max() <= 1e-4


def test_torch_export_round_trip(tiny_elastic, tmp_path):
    static = extract(tiny_elastic.eval(), SubNet(3, 0.5))
    loaded = load_unet(save_unet(static, tmp_path / "m.pt"))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), static(x))


def test_torch_export_loads_in_a_process_without_the_elastic_code(tiny_elastic, tmp_path):
    """The file holds a config and weights only: a fresh process rebuilds it with the static UNet class."""
    import subprocess
    import sys

    save_unet(extract(tiny_elastic.eval(), SubNet(2, 1.0)), tmp_path / "m.pt")
    code = (
        "import sys, torch\n"
        "from elasticnet.export.torch_export import load_unet\n"
        f"m = load_unet({str(tmp_path / 'm.pt')!r})\n"
        "print(m(torch.zeros(1, 3, 8, 8)).shape)\n"
        "assert not any(k.startswith('elasticnet.models.elastic') for k in sys.modules), sorted(sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch.Size([1, 1, 8, 8])" in out.stdout


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None])
def test_loading_a_broken_torch_export_gives_clear_error(tmp_path, content, tiny_elastic):
    path = tmp_path / "m.pt"
    if content is None:
        save_unet(extract(tiny_elastic, SubNet(2, 1.0)), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # truncated
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match="not a readable elasticnet model"):
        load_unet(path)


def test_pickle_that_runs_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "elasticnet-unet", "x": Evil()}))
    with pytest.raises(UserError, match="not a readable"):
        load_unet(path)


def test_bundle_without_model_file_is_refused(tmp_path):
    from elasticnet.site.bundle import write_description

    (tmp_path / "model.json").write_text(json.dumps({"format": "elasticnet-export", "model_file": "model.onnx"}))
    with pytest.raises(UserError, match="carries no description_sha256"):  # an unhashed description
        read_description(tmp_path)
    write_description(
        tmp_path,
        {  # a valid, hashed description whose model file is gone
            "format": "elasticnet-export",
            "model_file": "model.onnx",
            "model_sha256": "0" * 64,
            "runtime": "onnxruntime",
            "target": "cpu",
            "precision": "fp32",
            "subnet": {"depth": 3, "width": 1.0, "key": "d3-w1"},
            "channels": [8, 16, 32],
            "input": {"channels": 3, "height": 32, "width": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "tile": None},
            "output": {"threshold": 0.5},
            "training_config": {},
            "elasticnet_version": "0",
            "exported_at": "2026-12-02T00:00:00+00:00",
        },
    )
    with pytest.raises(UserError, match="lacks its model file"):
        read_description(tmp_path)
    with pytest.raises(UserError, match=r"model.json is missing"):
        read_description(tmp_path / "nowhere")


def test_the_description_is_a_typed_record_that_round_trips(tmp_path):
    """model.json <-> Description: what export writes is what a site reads, field for field."""
    from elasticnet.site.bundle import Description, InputSpec, OutputSpec, SubnetRef, write_description

    d = Description(
        model_file="model.onnx",
        model_sha256="0" * 64,
        target="cpu",
        runtime="onnxruntime",
        precision="fp32",
        subnet=SubnetRef(3, 0.5, "d3-w0.5"),
        channels=[4, 8, 16],
        input=InputSpec(height=32, width=48, channels=1, mean=[0.2], std=[0.25], tile=[16, 16]),
        output=OutputSpec(threshold=0.4),
        training_config={"model": {}},
        elasticnet_version="x",
        exported_at="now",
    )
    (tmp_path / "model.onnx").write_bytes(b"")
    write_description(tmp_path, d)
    raw = json.loads((tmp_path / "model.json").read_text())
    assert Description.from_dict(raw, tmp_path / "model.json") == d
    raw["input"]["height"] = "tall"  # a schema violation is one clear error naming the field
    with pytest.raises(UserError, match=r"input.height must be a whole number"):
        Description.from_dict(raw, tmp_path / "model.json")
