"""Self-Conditioned GAN (Liu et al., CVPR 2020) in TensorFlow 2 / Keras 3.

Entry scripts (original names): ``train.py``, ``visualize_clusters.py``, ``metrics.py``,
``cluster_metrics.py``, ``train_classifier.py`` and ``2d_mix/train.py``; the library modules beside them
hold the logic (``config``, ``models``, ``clusterers``, ``losses``, ``training``, ``trainer``, ``data``,
``sampling``, ``evaluation``, ``classifiers``, ``visualize``) and ``mix2d`` the 2-D experiments.
"""
