"""The names an analysis of a ticket offers: the landscape's directions and the parameter sets
an analysis moves (what each means: `evoprune.analysis.landscape`, `evoprune.analysis.params`).

Plain data without torch, so that `evoprune analyze --help` offers them without loading it.
"""

DIRECTIONS = ("gaussian", "filter", "uniform")
PARAM_SETS = ("surviving", "surviving+bias", "all")
