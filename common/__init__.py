"""Shared library of the project: layers, losses, priors, data, metrics and the training loop.

Nothing in ``common`` imports from the paper folders (``glo``, ``selfcond``, ``latentclr``, ``congan``).
"""
