"""``lucyd demo``: a complete synthetic widefield experiment from nothing, with a visual report.

Stages (each prints a message; the parts show their own progress bars):

1. a Born–Wolf widefield PSF (Born & Wolf, *Principles of Optics*, §8.8);
2. a synthetic sample of a kind the network never sees in training (``tubules`` by default),
   imaged through the forward model ``Poisson(photons · (gt ⊛ psf)) + N(0, read_noise²)``
   (the RLN recipe, Li et al., Nature Methods 2022);
3. a synthetic ``mixed``-structure training set through the same PSF
   (:func:`lucyd.synth.make_dataset`);
4. classic Richardson–Lucy (flipped back projector, a fixed documented iteration count: choosing
   the count with the ground truth would flatter RL);
5. Wiener–Butterworth RL (Guo et al., Nature Biotechnology 2020; 2 iterations);
6. RLN training (Li et al. 2022) on the training set with a small, fixed step budget;
7. RLN restoration of the sample;
8. evaluation against the ground truth (:func:`lucyd.metrics.evaluate`: percentile-normalised
   ground truth, affinely fitted prediction) and ground-truth-free resolution estimates
   (one-image FRC, decorrelation analysis);
9. ``report.html``, ``figure.png``, ``metrics.json``.

Every file is written atomically; a finished stage is recorded in ``DIR/.state.json`` together
with a digest of the configuration, so re-running into the same folder with the same
configuration reuses finished stages (an interrupted training resumes from its last
checkpoint) and a different configuration recomputes everythi

Modules: :mod:`~lucyd.pipelines.demo.config` (:class:`DemoConfig`), :mod:`~.run` (the stages),
:mod:`~.report` (figures and report). Presets live in :mod:`lucyd.pipelines.presets`.
"""

from lucyd.pipelines.demo.config import _PRESETS, DemoConfig
from lucyd.pipelines.demo.report import METHOD_ORDER, display_range, fitted_panels
from lucyd.pipelines.demo.run import run_demo
from lucyd.pipelines.presets import NET_DEFAULTS, SAMPLE_DEFAULTS
from lucyd.pipelines.presets import psf_model_name as model_name

__all__ = ["METHOD_ORDER", "NET_DEFAULTS", "SAMPLE_DEFAULTS", "DemoConfig", "_PRESETS",
           "display_range", "fitted_panels", "model_name", "run_demo"]
