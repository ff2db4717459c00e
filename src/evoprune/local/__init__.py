"""Exact single-flip local search over masks: incremental float64 state, compiled kernels, search."""
