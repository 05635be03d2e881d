"""``elasticnet predict``: masks, overlays and lesion areas for image files, with an exported ONNX bundle.

Runs on ONNX Runtime without torch (``pip install elasticnet[site]`` is enough).
"""

from __future__ import annotations

import argparse

from elasticnet.cli.arguments import at_least


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict masks for images with an exported bundle (no torch)", description=__doc__
    )
    p.add_argument("--model", required=True, help="export bundle folder (elasticnet export --target cpu)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument(
        "--out",
        default="",
        help="output folder (masks/, overlays/, predictions.csv); default: a new "
        "folder predictions-<date>-<time>. Existing files are never replaced without --overwrite",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace masks, overlays and predictions.csv that exist in --out (never allowed inside an input folder)",
    )
    p.add_argument("--threads", type=at_least(0), default=0, help="ONNX Runtime threads (default: its default)")
    p.add_argument("--no-overlays", action="store_true", help="write masks and the CSV only")


def run(args: argparse.Namespace) -> int:
    from elasticnet.site.predict import predict_files

    out: list = []
    rows = predict_files(
        args.model,
        args.inputs,
        args.out or None,
        args.threads,
        overlays=not args.no_overlays,
        overwrite=args.overwrite,
        chosen=out.append,
    )
    lesions = sum(1 for r in rows if r["lesion_pixels"])
    ms = sorted(r["model_ms"] for r in rows)
    print(
        f"predicted {len(rows)} image(s) into {out[0]}/ ({lesions} with a lesion); model time per image "
        f"median {ms[len(ms) // 2]:.1f} ms"
    )
    return 0
