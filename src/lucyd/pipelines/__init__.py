"""End-to-end pipelines: the ``lucyd demo`` walkthrough and the ``lucyd bench`` benchmark.

* :class:`DemoConfig`, :func:`run_demo` - a synthetic widefield experiment from scratch:
  Born–Wolf PSF, a held-out sample, a synthetic training set, classic RL, Wiener–Butterworth
  RL, a trained RLN, metrics against the ground truth and a self-contained HTML report.
* :class:`BenchConfig`, :func:`run_bench` - methods x data sets (synthetic and real), with the
  "push it until it breaks" curves of Chen et al. (2021, 3D-RCAN).
"""

from lucyd.pipelines.bench import SUITES, BenchConfig, run_bench
from lucyd.pipelines.common import real_data_dir
from lucyd.pipelines.demo import DemoConfig, run_demo

__all__ = ["SUITES", "BenchConfig", "DemoConfig", "real_data_dir", "run_bench", "run_demo"]
