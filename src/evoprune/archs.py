"""The names of the random networks: the paper's architecture shorthands and the initialisations.

Plain data without torch, so that the command line can offer and list them (`evoprune archs`,
`evoprune search --help`) without loading it; `evoprune.nets` builds the networks they name.
"""

# Hidden widths of the paper's architectures (arXiv 2411.04658, Sec. 4); in/out come from the data.
ARCHS: dict[str, list[int]] = {"A": [20], "B": [75], "C": [100], "D": [50, 50]}

CONV_ARCHS = ("conv",)  # architecture names that build a `ConvNet` instead of an MLP

INITS = ("uniform", "kaiming-normal", "signed-constant")

# The nonlinearity between an MLP's layers. The paper's networks use ReLU; with any other the
# GA's evaluator is as fast, the local search scores each flip by a forward (exact, slower
# than ReLU's incremental update), and edge-popup is not offered.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
# the backprop baseline's, by scikit-learn's names (MLPClassifier has no GELU)
SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}
