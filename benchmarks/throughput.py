"""Training throughput of this checkout against another (e.g. an older commit), in one run.

    git worktree add /tmp/base 3a28b05
    python benchmarks/throughput.py --baseline /tmp/base --data PATH/cvc-clinicdb [--rounds 2] [--steps 80] \\
        [--variants "auto=;fp32=--amp none"]

Trains the CVC-ClinicDB ``cpu`` profile with ``--strategy sandwich --widths 0.25,0.5,0.75,1`` (``--flags``
to change) for ``--steps`` steps with each checkout's ``elasticnet train`` (the baseline with its own
defaults, this checkout once per variant), rounds interleaved so that the drift of a shared machine
cancels, and reads the training images/s from each run's log.csv (the training loop only; start-up and
the final table are not counted). Prints the CPU's flags, each run, and the median ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticnet import hardware  # noqa: E402
from elasticnet.errors import run_script  # noqa: E402
from elasticnet.reporting import read_csv  # noqa: E402

FLAGS = (
    "--config experiments/cvc_clinicdb.yaml --profile cpu --split random --strategy sandwich --widths 0.25,0.5,0.75,1"
)


def images_per_s(checkout: Path, data: str, flags: str, steps: int, out: Path, extra: list[str]) -> float:
    command = [
        sys.executable,
        "-m",
        "elasticnet",
        "train",
        *flags.split(),
        "--data",
        data,
        "--max-steps",
        str(steps),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training in {checkout} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = read_csv(out / "log.csv")
    seconds = sum(float(r["seconds"]) for r in rows)
    images = sum(float(r["images_per_s"]) * float(r["seconds"]) for r in rows)
    return images / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="a checkout of the commit to compare with (git worktree)")
    p.add_argument("--data", required=True, help="the CVC-ClinicDB folder")
    p.add_argument("--flags", default=FLAGS)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--variants",
        default="auto=",
        help="this checkout's variants: NAME=FLAGS separated by ';' (default: its defaults)",
    )
    args = p.parse_args()
    variants = {name: flags.split() for name, _, flags in (v.partition("=") for v in args.variants.split(";"))}
    # This checkout skips its final table; the baseline may not know the flag, and its table is not timed.
    print(
        f"CPU: {hardware.cpu_summary()}\nthreads: {os.environ.get('OMP_NUM_THREADS', 'default')}; "
        f"{args.steps} steps of: {args.flags}",
        flush=True,
    )
    results: dict[str, list[float]] = {"baseline": [], **{k: [] for k in variants}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            base = images_per_s(Path(args.baseline), args.data, args.flags, args.steps, Path(tmp) / f"base{r}", [])
            results["baseline"].append(base)
            print(f"round {r + 1}: baseline {base:.1f} img/s", flush=True)
            for name, extra in variants.items():
                mine = images_per_s(
                    ROOT, args.data, args.flags, args.steps, Path(tmp) / f"{name}{r}", ["--no-final-table", *extra]
                )
                results[name].append(mine)
                print(f"round {r + 1}: {name} {mine:.1f} img/s ({mine / base:.2f} x baseline)", flush=True)
    print()
    for name in variants:
        ratios = [m / b for m, b in zip(results[name], results["baseline"])]
        print(
            f"{name}: median {statistics.median(results[name]):.1f} img/s vs baseline "
            f"{statistics.median(results['baseline']):.1f}: {statistics.median(ratios):.2f} x"
        )


if __name__ == "__main__":
    run_script(main)
