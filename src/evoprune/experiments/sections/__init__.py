"""The report's sections beyond the paper's figures, one module per capability: its tidy frames
(`prepare_*`, tested), its drawings (`draw_*`), its tables and the claims it checks. They import
helpers from `figures` / `draw` below them; `evoprune.experiments.catalogue` lists them all.
"""
