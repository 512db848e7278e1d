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
