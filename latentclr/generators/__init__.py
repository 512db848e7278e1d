"""Generators behind LatentCLR's interface (:mod:`latentclr.generators.base`).

- :mod:`biggan`, :mod:`stylegan2`, :mod:`stylegan`: Keras ports of the pre-trained generators the original
  uses, with the original's layer names, class names, truncation and ``use_w``; weights read from the
  published PyTorch files (:mod:`torchfile`, no PyTorch needed) or ``.npz`` conversions (:mod:`weights`);
  where they must be: :mod:`locate`.
- :mod:`keras_generator`: any Keras generator (``generator=keras``).
- :mod:`project`: generators trained by this project, from their run folders
  (``generator=glo|slogan|selfcond|congan``; ConGAN in :mod:`congan_run`).

The config ``_target_`` strings map to these classes in :data:`latentclr.build.GENERATORS`.
"""
