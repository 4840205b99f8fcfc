"""The reference models, installed with sbc as :mod:`sbc.models`.

One file per model; a study names one by its file name (``model = "crispr_screen"``).
Each file defines ``build(data)`` returning a Bambi or PyMC model for a design.
"""
