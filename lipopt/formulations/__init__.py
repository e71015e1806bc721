"""Model builders: Pyomo models for the MIP / MIQCQP formulations (no solver code here)."""
