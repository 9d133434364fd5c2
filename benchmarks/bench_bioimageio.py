"""bioimage.io packages of a 3D RLN: export, `bioimageio test`, round trip, bioimageio.core's borders.

Run: ``python benchmarks/bench_bioimageio.py [--out DIR] [--steps 20]`` (needs ``lucyd[bioimageio]``).

1. three synthetic 48×64×64 deconvolution pairs (``lucyd.synth``, mixed structures, Born–Wolf PSF,
   voxel size 0.3, 0.13, 0.13 µm) and a 3D RLN trained on them for ``--steps`` steps;
2. ``export_bioimageio`` (timed), then ``python -m bioimageio.core test PACKAGE`` (what
   ``bioimageio test`` runs; timed, its summary read back);
3. ``lucyd predict``'s library path on a 45×100×90 volume with the model folder and with the
   package (whole and tiled): the largest differences;
4. bioimageio.core's own whole-image prediction of the package's test input (it mirrors the input by
   the halo before the network) against lucyd's test output: interior and border differences.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-bioimageio-"))
    out.mkdir(parents=True, exist_ok=True)

    import lucyd
    from lucyd.export.bioimageio import export_bioimageio, predict_package_file
    from lucyd.io import ImageMetadata, read_image, write_image
    from lucyd.synth.dataset import SynthConfig, make_dataset
    from lucyd.train import TrainConfig, load_model, predict_file, train

    synth = SynthConfig(kind="mixed", task="deconvolution", n=3, shape=(48, 64, 64), seed=0,
                        psf_model="born-wolf", na=1.2, wavelength=0.52, psf_shape=(17, 17, 17),
                        voxel_size=(0.3, 0.13, 0.13))
    data = make_dataset(synth, out / "data", workers=1, progress=False, device="cpu")
    cfg = TrainConfig.build(model="rln", steps=args.steps, patch=(16, 32, 32), batch=2,
                            device="cpu", seed=0)
    model_dir = train(cfg, data, out / "rln3d")
    package = out / "rln3d.zip"
    package.unlink(missing_ok=True)
    t0 = time.perf_counter()
    export_bioimageio(model_dir, package)
    t_export = time.perf_counter() - t0

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(lucyd.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "bioimageio.core", "test", str(package),
                          "--summary", str(out / "summary.json")], capture_output=True, env=env)
    t_test = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())

    rng = np.random.default_rng(5)
    volume = rng.poisson(50, (45, 100, 90)).astype(np.float32)
    write_image(out / "vol.tif", volume, ImageMetadata("ZYX", (0.3, 0.13, 0.13)))
    predict_file(load_model(model_dir), out / "vol.tif", out / "ref.tif", progress=False)
    predict_package_file(package, out / "vol.tif", out / "pkg.tif", progress=False)
    predict_package_file(package, out / "vol.tif", out / "tiles.tif", tile_shape=(46, 64, 64),
                         progress=False)
    ref = read_image(out / "ref.tif")[0]
    pkg, meta = read_image(out / "pkg.tif")
    tiles = read_image(out / "tiles.tif")[0]

    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import get_test_input_sample, get_test_output_sample
    from bioimageio.spec import load_model_description

    descr = load_model_description(str(package))
    expected = get_test_output_sample(descr).members["restored"].data.to_numpy()[0, 0]
    with create_prediction_pipeline(descr, weight_format="torchscript") as pp:
        core = pp.predict_sample_without_blocking(get_test_input_sample(descr))
    core = core.members["restored"].data.to_numpy()[0, 0]
    diff = np.abs(core - expected)
    halo = 18
    inner = diff[halo:-halo, halo:-halo, halo:-halo] if min(diff.shape) > 2 * halo else diff[:0]
    with zipfile.ZipFile(package) as zf:
        size = sum(i.file_size for i in zf.infolist())
        test_shape = np.load(io.BytesIO(zf.read("test_input.npy"))).shape

    rows = {
        "export (s)": round(t_export, 1),
        "bioimageio test (s, subprocess)": round(t_test, 1),
        "bioimageio test exit status": res.returncode,
        "bioimageio test status": summary["status"],
        "test details passed": sum(d["status"] == "passed" for d in summary["details"]),
        "test details": len(summary["details"]),
        "package size (MB)": round(size / 1e6, 2),
        "test input shape": list(test_shape),
        "max |package − folder| (whole image)": float(np.abs(pkg - ref).max()),
        "max |package tiled 46,64,64 − folder|": float(np.abs(tiles - ref).max()),
        "max |folder| (input units)": float(np.abs(ref).max()),
        "output voxel size": list(meta.voxel_size),
        "bioimageio.core vs lucyd test output, interior max": float(inner.max()) if inner.size
        else None,
        "bioimageio.core vs lucyd test output, border max (normalised units)": float(diff.max()),
        "max |test output| (normalised units)": float(np.abs(expected).max()),
    }
    for k, v in rows.items():
        print(f"{k}: {v}")
    (out / "bench_bioimageio.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
