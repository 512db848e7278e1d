"""SLOGAN (Stein Latent Optimization for GANs, Hwang et al., ICLR 2022) on TensorFlow 2 / Keras 3.

The method code both entry scripts share:

- :mod:`common.slogan.prior`: the learnable Gaussian-mixture prior (ρ, μ_c, Σ_c), responsibilities, the
  Gumbel-softmax component pick, and the Stein gradient estimates with their SGD updates (paper §3,
  Eqs. 3-7).
- :mod:`common.slogan.losses`: the U2C contrastive loss with the ArcFace scale and margin (both script
  variants), the hinge critic loss and the Lipschitz / gradient penalties.
- :mod:`common.slogan.layers`: TF1-exact batch normalisation and the encoder's spectral-norm projection.
- :mod:`common.slogan.schedules`: learning-rate decay, temperature, and which global step each update reads.
- :mod:`common.slogan.synthetic`: the 2-D synthetic experiment (``slogan_synthetic.py``): config, networks,
  objectives and train steps; :mod:`common.slogan.synthetic_run`: its run loop, figures and evaluation;
  :mod:`common.slogan.data`: the synthetic mixture and a checkpointable shuffled stream;
  :mod:`common.slogan.scatter`: the matplotlib-like scatter figures drawn with PIL;
  :mod:`common.slogan.report`: ``python -m common.slogan.report <run folder>``.

The submodules import TensorFlow; this package file does not, so ``import common.slogan`` is cheap.
"""
