"""One module per phantom kind; each defines a generator ``_<kind>(shape, rng, *, ...)``.

A new kind: a module here with its generator, added to ``lucyd.synth.phantoms._GENERATORS``,
``KINDS`` and ``COUNT_PARAMS``.
"""
