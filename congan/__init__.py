"""ConGAN ("Improving Latent Space of GANs", zeligism/ConGAN notebooks) in TensorFlow 2 / Keras 3.

Framework 2 (``ConsistentGAN.ipynb``): an SN-ResNet GAN conditioned on frozen SimSiam representations with
consistency losses; Framework 1 (``GAN_+_SimSiam.ipynb``): a GAN in SimSiam space plus an autoencoder.
Entry points: ``train.py``, ``pretrain_simsiam.py``, ``sample.py``, ``evaluate.py``.
"""
