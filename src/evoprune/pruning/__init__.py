"""Pruning methods that work on trained networks (selection dynamics, magnitude, SynFlow, ...).

Each method lives in its own module (selection dynamics in its own package, `selection/`);
import it directly, e.g. ``evoprune.pruning.synflow`` or ``evoprune.pruning.selection.dynamics``.
"""
