"""The "granules" phantom: vesicle-like points and blobs, isolated and clustered (after CARE,
Weigert et al., Nature Methods 2018)."""

from __future__ import annotations

import numpy as np

from lucyd.synth._phantom_common import (
    _count,
    _gauss_blobs,
    _n,
    _no_unknown,
    _range,
)
from lucyd.validation import positive


def _granules(shape, rng, *, n_clusters=10, per_cluster=15, cluster_spread=6.0, n_isolated=60,
              radius=(0.5, 2.0), intensity=(50, 850), scale_counts=True, **unknown):
    _no_unknown("granules", unknown, _granules)
    ndim = len(shape)
    shp = np.asarray(shape, dtype=float)
    r_lo, r_hi = _range(radius, "radius")
    i_lo, i_hi = _range(intensity, "intensity", positive=False)
    spread = positive(cluster_spread, "cluster_spread", allow_zero=True)
    mean_per = _count(per_cluster, "per_cluster")
    nc = _n(_count(n_clusters, "n_clusters"), shape, scale_counts)
    ni = _n(_count(n_isolated, "n_isolated"), shape, scale_counts)
    sizes = rng.poisson(mean_per, nc) if nc else np.zeros(0, dtype=int)
    cluster_centres = rng.uniform(0, shp, (nc, ndim))
    members = np.repeat(cluster_centres, sizes, axis=0)
    members = members + rng.normal(0, spread, members.shape)
    centres = np.concatenate([members, rng.uniform(0, shp, (ni, ndim))], axis=0)
    m = len(centres)
    vol = np.zeros(shape, dtype=np.float32)
    _gauss_blobs(vol, centres, rng.uniform(r_lo, r_hi, m), rng.uniform(i_lo, i_hi, m))
    return vol
