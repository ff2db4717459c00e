"""Pruning methods that work on trained networks (selection dynamics, magnitude, SynFlow, ...).

Each method lives in its own module; import it directly, e.g. ``evoprune.pruning.selection``.
"""
