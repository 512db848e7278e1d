"""The 2-D mixture experiments of the Self-Conditioned GAN (the original's ``2d_mix/`` folder, spec §2.3).

``selfcond/2d_mix/train.py`` is the entry script; ``2d_mix`` is not an importable package name, so the
library code lives here.
"""
