"""The report's catalogue: every figure a spec can name (`FIGURES`: how to prepare it, which
renderer draws it, its caption) and every renderer (`RENDERERS`). The paper's figures come from
`figures` / `draw`; the sections beyond them from `sections/`. Adding a figure is a line here.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from evoprune.experiments import draw, figures
from evoprune.experiments.figures import Figure
from evoprune.experiments.sections import analyses, beyond, pruning, selection, studies

FIGURES: dict[str, Figure] = {
    "fig3": Figure(
        "Fig. 3 - GA vs GA (adaptive AB)",
        figures.prepare_fig3,
        "bars",
        "Mean test accuracy and sparsity with 95% CIs, moons and circles, architectures A-D.",
    ),
    "fig4": Figure(
        "Fig. 4 - one evolution (circles, B, adaptive AB)",
        figures.prepare_fig4,
        "history",
        "Accuracy of the fittest and three sparsity curves per generation.",
        needs_history=True,
    ),
    "fig5": Figure(
        "Fig. 5 - edge-popup initialisations",
        figures.prepare_fig5,
        "init_bars",
        "Edge-popup (50%) test accuracy per initialisation, moons and circles, A-D.",
    ),
    "fig6": Figure(
        "Fig. 6 - GA vs edge-popup vs backprop",
        figures.prepare_fig6,
        "bars",
        "Mean test accuracy and sparsity with 95% CIs.",
        mixed_model=True,
    ),
    "fig7": Figure(
        "Fig. 7 - accuracy vs loss objective (blobs, C)",
        figures.prepare_fig7,
        "lines",
        "Test accuracy and sparsity against the number of classes, 95% CIs.",
    ),
    "fig9": Figure(
        "Fig. 9 - blobs 2-10 classes (C)",
        figures.prepare_fig9,
        "lines",
        "Test accuracy against the number of classes, 95% CIs; mean and std in the table.",
    ),
    "fig10": Figure(
        "Fig. 10 - digits (B)",
        figures.prepare_fig10,
        "lines",
        "Test accuracy against the number of classes (2, 3, 4, 5, 10), 95% CIs.",
    ),
    "fig11": Figure(
        "Fig. 11 - post-evolutionary pruning (digits)",
        figures.prepare_fig11,
        "stages",
        "Sparsity before and after post-evolutionary pruning, 95% CIs.",
    ),
    "beyond": Figure(
        "Beyond the paper's GA: memetic and local search",
        beyond.prepare_beyond,
        "case_bars",
        "Test accuracy, sparsity and wall time per problem and method, 95% CIs.",
        mixed_model=True,
    ),  # fmt: skip
    "scale": Figure(
        "MNIST: test accuracy against wall time",
        beyond.prepare_scale,
        "scale",
        "Every method and network on one plot: mean over seeds, 95% CIs.",
        mixed_model=False,
    ),  # fmt: skip
    "fig1": Figure(
        "Fig. 1 - the ticket graph",
        analyses.prepare_fig1,
        "ticket_graph",
        "How often each connection survives over the tickets of one cell (red: in more than "
        "half of them; width: frequency), and the lowest seed's ticket.",
        table=analyses.table_fig1,
    ),
    "fig8": Figure(
        "Fig. 8 - loss and accuracy landscapes",
        analyses.prepare_fig8,
        "landscape",
        "Training loss and accuracy of w_ticket + δ·d1 + η·d2 (Gaussian directions over the kept "
        "weights); the star is the ticket.",
        table=analyses.table_fig8,
    ),
    "hessian": Figure(
        "Hessian spectra - normalised vs raw inputs (digits, B)",
        analyses.prepare_hessian,
        "spectra",
        "Top eigenvalues of the Hessian of the mean training cross-entropy over the kept "
        "weights (Lanczos), per class count and input scaling; log scale.",
        table=analyses.table_hessian,
    ),
    "pruning": Figure(
        "Extreme-sparsity pruning (Hirianskyi & Bulakh, SUNZ 2026)",
        pruning.prepare_pruning,
        "pruning",
        "Test macro-F1 against sparsity without and after fine-tuning (line style: EC), layer densities and pruning seconds at the highest sparsity.",
        table=pruning.table_pruning,
    ),  # fmt: skip
    "selection": Figure(
        "Pruning as evolution (Shah & Khan, arXiv 2601.10765)",
        selection.prepare_selection,
        "fraction_lines",
        "Mean test accuracy (95% CI band) against the share of hidden neurons removed: each dynamic hard-pruned, its target mode, the post-hoc controls on the dense network, the MLP trained small; stars: the paper (full MNIST).",
        table=selection.table_selection,
    ),  # fmt: skip
    "hpo": Figure(
        "HPO: CMA-ES vs TPE vs random, SynFlow vs training (Hirianskyi & Bulakh, SUNZ 2026)",
        studies.prepare_hpo,
        "hpo",
        "Best validation macro-F1 so far per sampler (mean over seeds), the samplers' own time per trial, SynFlow vs training: objective time per trial and the test F1 of the chosen configuration.",
        needs_history=True,
        table=studies.table_hpo,
    ),  # fmt: skip
    "minimize": Figure(
        "Minimising test functions at equal evaluation budgets (Hirianskyi & Bulakh, SUNZ 2026)",
        studies.prepare_minimize,
        "minimize",
        "Median best value so far against evaluations (dashed: success, f < 1e-6); the table gives median best, success rate and median evaluations to success.",
        needs_history=True,
        table=studies.table_minimize,
    ),  # fmt: skip
    "weights": Figure(
        "Training an MLP 64-32-10's weights: Adam vs sep-CMA-ES vs GA (Hirianskyi & Bulakh, SUNZ 2026)",
        studies.prepare_weights,
        "weights",
        "Validation macro-F1 against training seconds (mean and std over seeds) and the final test macro-F1 (dashed: 0.97).",
        needs_history=True,
        table=studies.table_weights,
    ),  # fmt: skip
}


# what a spec without a known `figure` gets: its arms side by side
GENERIC = "arms"
FIGURES[GENERIC] = Figure(
    "Test accuracy and sparsity per arm",
    figures.prepare_arms,
    "bars",
    "Mean test accuracy and sparsity with 95% CIs per dataset, architecture and arm.",
    mixed_model=True,
)


RENDERERS: dict[str, Callable[[pd.DataFrame, str], MplFigure]] = {
    "bars": draw.draw_bars,
    "init_bars": draw.draw_init_bars,
    "lines": draw.draw_lines,
    "history": draw.draw_history,
    "stages": draw.draw_stages,
    "case_bars": beyond.draw_case_bars,
    "scale": beyond.draw_scale,
    "ticket_graph": analyses.draw_fig1,
    "landscape": analyses.draw_fig8,
    "spectra": analyses.draw_hessian,
    "pruning": pruning.draw_pruning,
    "fraction_lines": selection.draw_fraction_lines,
    "hpo": studies.draw_hpo,
    "minimize": studies.draw_minimize,
    "weights": studies.draw_weights,
}
