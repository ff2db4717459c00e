"""The paper's analyses of tickets (arXiv 2508.08877): loss landscapes (Fig. 8), Hessian spectra
(the digits analysis) and the ticket graph (Fig. 1)."""
