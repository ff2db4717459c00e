"""The optimiser studies of Hirianskyi & Bulakh (SUNZ 2026): evolutionary, gradient-based and
Bayesian optimisers compared on three tasks.

- `evoprune.studies.hpo`: hyperparameter optimisation of an MLP on digits with Optuna's samplers
  (TPE, CMA-ES, random), a full-training or a zero-cost (SynFlow) objective; its study's shared
  storage and crash recovery: `evoprune.studies.hpo_storage`.
- `evoprune.studies.functions` + `evoprune.studies.minimize`: the classic test functions and
  CMA-ES (IPOP) / a real-coded GA / Adam / SGD / random search at equal evaluation budgets.
- `evoprune.studies.train_weights`: Adam vs sep-CMA-ES vs a GA training the weights of a
  64-32-10 MLP at the same budget of CPU seconds.

Only the paper's abstract is public; the setups are ours and configurable.
"""
