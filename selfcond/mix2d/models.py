"""The 2-D generator and discriminator (the original's ``2d_mix/models/cluster.py``, spec §5.5).

Conditioning is always "conditional": the generator concatenates a normalised label embedding to z,
the discriminator is multi-headed (one logit per label, the one of y selected). Neither clamps labels.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from selfcond.layers import LatentEmbeddingConcat, LogitsHead, TorchBatchNorm, attach, dense


class Generator2D(keras.Model):
    """concat(z, e_y/||e_y||) -> [Linear 400, BN, ReLU] x 4 -> Linear 2 (no output activation).

    Args:
        k_value: labels K (embedding rows). z_dim: 2 (the original always builds G with 2).
        embed_size: 32. act_dim: 400 (``--d_act_dim`` does not reach G). x_dim: 2.

    Call: ``(z [B, 2], y [B] int, training)`` -> points [B, 2]. 500,802 parameters for K = 50.
    """

    def __init__(self, k_value: int, z_dim: int = 2, embed_size: int = 32, act_dim: int = 400, x_dim: int = 2,
                 **kwargs):
        super().__init__(**kwargs)
        self.k_value, self.z_dim = int(k_value), int(z_dim)
        self.embedding = LatentEmbeddingConcat(k_value, embed_size, clamp=False, name="embedding")
        fan_ins = [z_dim + embed_size, act_dim, act_dim, act_dim]
        self._fcs = attach(self, ["fc1", "fc2", "fc3", "fc4"],
                           (dense(act_dim, f, name=f"fc{i + 1}") for i, f in enumerate(fan_ins)))
        self._bns = attach(self, ["bn1", "bn2", "bn3", "bn4"], (TorchBatchNorm(name=f"bn{i + 1}") for i in range(4)))
        self.fc_out = dense(x_dim, act_dim, name="fc_out")

    def call(self, z, y, training=False):
        out = self.embedding(z, y)
        for fc, bn in zip(self._fcs, self._bns):
            out = tf.nn.relu(bn(fc(out), training=training))
        return self.fc_out(out)


class Maxout(keras.layers.Layer):
    """Linear(d_in -> d_out * pool) then the max over each **consecutive** group of ``pool`` outputs.

    Call: [B, d_in] -> [B, d_out]; unit u is max over linear outputs pool*u .. pool*u + pool - 1.
    """

    def __init__(self, d_in: int, d_out: int, pool_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.d_out, self.pool_size = int(d_out), int(pool_size)
        self.lin = dense(d_out * pool_size, d_in, name="lin")

    def call(self, inputs):
        out = self.lin(inputs)
        return tf.reduce_max(tf.reshape(out, [-1, self.d_out, self.pool_size]), axis=2)


class Discriminator2D(keras.Model):
    """Maxout(2 -> 200) -> Maxout(200 -> 200) -> Maxout(200 -> 200) -> features (200) -> Linear(200 -> K)[y].

    Call: ``(x [B, 2], y [B] int, training)`` -> logits [B]; :meth:`features` -> [B, act_dim].
    415,050 parameters for K = 50.
    """

    def __init__(self, k_value: int, act_dim: int = 200, x_dim: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.k_value, self.feature_dim = int(k_value), int(act_dim)
        self.fc1 = Maxout(x_dim, act_dim, name="fc1")
        self.fc2 = Maxout(act_dim, act_dim, name="fc2")
        self.fc3 = Maxout(act_dim, act_dim, name="fc3")
        self.fc4 = LogitsHead(k_value, act_dim, "mask", clamp=False, name="fc4")

    def features(self, x, training=False):
        return self.fc3(self.fc2(self.fc1(x)))

    def call(self, x, y, training=False):
        return self.fc4(self.features(x, training=training), y)


def build_models(k_value: int, d_act_dim: int = 200):
    """Built (variables created) G and D of the 2-D experiments."""
    generator = Generator2D(k_value, name="generator")
    discriminator = Discriminator2D(k_value, act_dim=d_act_dim, name="discriminator")
    generator(tf.zeros([2, 2]), tf.zeros([2], tf.int32))
    discriminator(tf.zeros([2, 2]), tf.zeros([2], tf.int32))
    return generator, discriminator
