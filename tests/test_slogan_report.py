"""``python -m common.slogan.report --samples``: what each mixture component generates, from a checkpoint."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from common.slogan import report


def test_mode_shares_by_nearest_mode():
    modes = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    points = np.array([[0.1, 0.0], [0.9, 0.2], [0.4, 0.0], [0.0, 0.7], [0.6, 0.1]])
    # nearest: 0, 1, 0, 2, 1
    np.testing.assert_allclose(report.mode_shares(points, modes), [0.4, 0.4, 0.2])


def test_component_owners_need_ninety_percent():
    shares = np.array([[0.95, 0.05, 0.0], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9]])
    assert report.component_owners(shares) == [0, None, 2]
    assert report.component_owners(shares, threshold=0.96) == [None, None, None]


def test_generated_check_on_a_checkpoint_whose_generator_is_constant(tmp_path, capsys):
    from common.slogan.data import build_synthetic_streams
    from common.slogan.synthetic import SyntheticConfig, SyntheticState

    config = SyntheticConfig(num_cluster=3, latent_dim=4, log_dir=str(tmp_path) + "/")
    train, evaluation = build_synthetic_streams(config.seed)
    state = SyntheticState(config, train, evaluation)
    # G(z) = tanh(bias) for every z: put the bias on true mode 3, so every sample belongs to it.
    target = train.scaled_means[3]
    last = state.generator.dense_2
    last.kernel.assign(tf.zeros_like(last.kernel))
    last.bias.assign(np.arctanh(target).astype("float32"))
    tf.train.CheckpointManager(tf.train.Checkpoint(**state.trackables()), str(tmp_path), 1,
                               checkpoint_name="model").save(checkpoint_number=7)
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))

    result = report.generated_check(tmp_path, samples=64)
    assert result["checkpoint"].endswith("model-7")
    np.testing.assert_allclose(result["mode_mass"], np.eye(8)[3])
    assert np.asarray(result["component_modes"]).shape == (3, 8)
    assert result["owner"] == [3, 3, 3] and result["one_component_per_mode"] is False

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 7, "nmi": 0.5, "ari": 0.4, "purity": 0.6,
                                                        "pi": [1 / 3] * 3, "nearest_mode": [3, 3, 3]}) + "\n")
    assert report.main([str(tmp_path), "--samples", "16"]) == 0
    assert '"one_component_per_mode": false' in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        report.main([str(tmp_path), "--samples", "-1"])
    assert err.value.code == 2


def test_one_component_per_mode_needs_every_mode_owned_once():
    assert report.one_component_per_mode([2, 0, 1], 3)
    assert not report.one_component_per_mode([2, 0, None], 3)  # a component spread over modes
    assert not report.one_component_per_mode([2, 0, 0], 3)  # two components on one mode, one mode unowned


# A stand-in with the fragments original_check patches, in the original's order (the real file is not in this repo).
_ORIGINAL_LIKE = """import numpy as np
import tensorflow as tf
import matplotlib.pyplot as plt
x = tf.contrib.layers.batch_norm(x)
y = tf.layers.dense(x, 1) + tf.layers.dense(x, 2)
f = tf.norm(tf.contrib.layers.flatten(x))
it = data.make_initializable_iterator()
opt = tf.train.experimental.enable_mixed_precision_graph_rewrite(sgd)
if __name__ == "__main__":
    np.random.seed(0)
    tf.set_random_seed(0)

    sess = None
    for _ in t:
        i += 1
"""


def test_original_check_patches_each_fragment_and_refuses_another_version():
    from common.errors import UsageError
    from common.slogan.original_check import patch_source

    patched = patch_source(_ORIGINAL_LIKE)
    assert "import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()" in patched
    assert "tf.contrib" not in patched and "matplotlib" not in patched and "tf.layers" not in patched
    assert patched.count("tf1_layers.dense(") == 2 and "opt = (sgd)" in patched
    assert "np.random.seed(_SEED)" in patched and "if _probe(globals(), i):\n            break" in patched
    compile(patched, "patched", "exec")  # still Python
    assert "enable_resource_variables" not in patched
    assert "tf.disable_v2_behavior()\ntf.enable_resource_variables()" in patch_source(_ORIGINAL_LIKE, True)
    with pytest.raises(UsageError, match="batch_norm"):
        patch_source(_ORIGINAL_LIKE.replace("tf.contrib.layers.batch_norm(x)", "keras_batch_norm(x)"))
