"""Selection-dynamics pruning ("Pruning as Evolution", Shah & Khan): hidden neurons as
populations whose masses evolve under selection while the network trains; the least fit die out.

- `dynamics`: the selection dynamics (replicator, exponential, logistic) and their config;
- `masses`: neuron masses, and shrinking an MLP to the survivors;
- `training`: the training loop they ride on (Adam, seeded batches, shift augmentation);
- `run`: one experiment: the dynamics, post-hoc controls on the same network, networks trained
  small; `job`: the ``method: selection`` runner; `export`: the physically smaller network;
  `figures`: a run's own figures.
"""
