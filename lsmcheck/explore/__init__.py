"""Exploration: measured stability limits, headroom, sweeps and a worst-case input hunter.

* :mod:`lsmcheck.explore.probe` runs a registered algorithm on a batch of probe vectors in a
  dtype and classifies every row with :mod:`lsmcheck.metrics` against :mod:`lsmcheck.reference`.
* :mod:`lsmcheck.explore.limits` searches, by bisection over the dtype's ordered bit patterns,
  where each algorithm breaks (``lsmcheck limits``): the probe points and the searches are in
  :mod:`lsmcheck.explore.search`, the verdicts in words in :mod:`lsmcheck.explore.verdicts`.
* :mod:`lsmcheck.explore.headroom` says how close a vector comes to those limits (``run``,
  ``explain``).
* :mod:`lsmcheck.explore.generators` and :mod:`lsmcheck.explore.sweep` vary one parameter of a
  seeded family of vectors and audit every step (``lsmcheck sweep``).
* :mod:`lsmcheck.explore.hunt` searches for the inputs that break an implementation worst
  (``lsmcheck hunt``).

This package is numeric core: no click, no rich.  Submodules are imported explicitly (the engine
imports :mod:`~lsmcheck.explore.headroom`, and :mod:`~lsmcheck.explore.sweep` imports the engine).
"""
