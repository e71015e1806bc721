"""Sound pre-activation bounds (interval arithmetic, linear relaxation, LP tightening)."""
