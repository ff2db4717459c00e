"""The names the optimiser studies offer: hpo's samplers, objectives and search spaces, and the
methods that train the weights (what each means: `evoprune.studies.hpo`,
`evoprune.studies.train_weights`).

Plain data without torch or Optuna, so that `evoprune hpo --help` offers them without loading
either.
"""

SAMPLERS = ("tpe", "cmaes", "random")
HPO_OBJECTIVES = ("train", "synflow")
SPACES = ("low", "high")

WEIGHT_METHODS = ("adam", "sep-cmaes", "ga")
