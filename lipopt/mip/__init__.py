"""Mixed-integer methods: the MILP (LipMIP family), its LP relaxation and the MIQCQP formulations."""
