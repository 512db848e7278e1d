"""LatentCLR (Yüksel et al., ICCV 2021) in TensorFlow 2 / Keras 3.

Entry points (Hydra command lines, as in the original repository): ``latentclr/train.py``,
``latentclr/eval.py``, ``latentclr/gen.py``; configuration groups under ``latentclr/conf``.
Library modules: :mod:`latentclr.losses` (contrastive loss), :mod:`latentclr.models` (direction models
and projector heads), :mod:`latentclr.optim` (torch-form optimisers and the step schedule),
:mod:`latentclr.generators` (pre-trained generators behind one interface), :mod:`latentclr.build`
(config -> objects), :mod:`latentclr.trainer`, :mod:`latentclr.evaluate`, :mod:`latentclr.generate`.
"""
