"""Certification: turning points, pairs, patterns and solver incumbents into certified bounds.

* :mod:`.witness` - a point's Jacobian norm, its region margin and domain membership; pair ratios made
  safe against float64 rounding; projection onto the domain.
* :mod:`.regions` - an activation pattern's region (its linear constraints) and an interior point of it in
  the domain (the margin LP / SOCP of :mod:`lipopt.exact.interior`).
* :mod:`.points` - sampling the domain, certifying the best of many sampled points (the lower-bound methods).
* :mod:`.candidates` - a MIP's incumbents as certified lower bounds.
* :mod:`.bracket` - the bracket rules: solver terminations to verdicts, dual bounds to UPPER, certified
  candidates to LOWER, EXACT only when they meet.

The robustness radius of a classifier is another thing and lives in :mod:`lipopt.analytic.robustness`.
Nothing heavy is imported here.
"""
