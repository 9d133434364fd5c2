"""deconwolf's throughput protocol: one RL deconvolution of a 20×2048×2048 image with a 39×117×117 PSF.

The protocol of the deconwolf paper (Wernersson et al., Nat. Methods 2024; 20 iterations of a
2048×2048×20 image with a 117×117×39 Born–Wolf PSF): here classic RL, non-circulant (Bertero
weights), flat start, in one process. Run it under ``/usr/bin/time -v`` for the peak resident
memory (``Maximum resident set size``) and the user/system CPU seconds; the script prints, as
one JSON line, the wall time of the deconvolution call, its CPU seconds (user, system), the
process's peak RSS (``ru_maxrss``), the memory model (:func:`lucyd.deconv.estimate_memory`) and,
with ``--psf-energy``, the PSF size and energy fraction kept by
:func:`lucyd.deconv.psfprep.trim_psf`.

Usage::

    OMP_NUM_THREADS=2 /usr/bin/time -v python benchmarks/bench_protocol.py --threads 2
    python benchmarks/bench_protocol.py --shape 10,1024,1024 --psf-shape 39,117,117   # a smaller case
"""

from __future__ import annotations

# isort: off
import lucyd  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
# isort: on

import argparse
import json
import os
import resource
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="20,2048,2048")
    ap.add_argument("--psf-shape", default="39,117,117")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--psf-energy", type=float, default=None,
                    help="trim the PSF to this energy fraction first (lucyd.deconv.psfprep.trim_psf)")
    args = ap.parse_args()
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    import torch

    torch.set_num_threads(args.threads)
    from lucyd.deconv import deconvolve, estimate_memory
    try:
        from lucyd.forward.fft import is_point_symmetric
    except ImportError:  # lucyd before the in-place engine

        def is_point_symmetric(psf):
            return False
    from lucyd.psf import make_psf

    shape = tuple(int(v) for v in args.shape.split(","))
    psf_shape = tuple(int(v) for v in args.psf_shape.split(","))
    # deconwolf's dw_bw defaults: NA 1.45, ni 1.515, 65 nm pixels, 200 nm planes (DAPI, 466 nm)
    psf = make_psf("born-wolf", psf_shape, (0.2, 0.065, 0.065), na=1.45, wavelength=0.466, ni=1.515)
    record = {"shape": shape, "psf_shape": psf_shape, "iterations": args.iterations,
              "threads": args.threads, "load_before": os.getloadavg()}
    if args.psf_energy is not None:
        from lucyd.deconv.psfprep import trim_psf

        psf, kept = trim_psf(psf, args.psf_energy)
        record.update(psf_energy=args.psf_energy, psf_energy_kept=kept, psf_trimmed_shape=psf.shape)
    image = np.random.default_rng(0).poisson(100.0, shape).astype(np.float32)
    try:
        record["model_bytes"] = estimate_memory(shape, psf.shape,
                                                symmetric_psf=is_point_symmetric(psf))
    except TypeError:  # lucyd before the in-place engine (for side-by-side runs)
        record["model_bytes"] = estimate_memory(shape, psf.shape)
    record["image_bytes"] = image.nbytes
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    deconvolve(image, psf, iterations=args.iterations, device="cpu", progress=False)
    record["seconds"] = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    record["cpu_user_s"] = after.ru_utime - before.ru_utime
    record["cpu_system_s"] = after.ru_stime - before.ru_stime
    record["peak_rss_bytes"] = after.ru_maxrss * 1024
    record["load_after"] = os.getloadavg()
    print(json.dumps(record, default=str), flush=True)


if __name__ == "__main__":
    main()
