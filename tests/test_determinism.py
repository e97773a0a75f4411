"""Determinism (issue 4): the same int seed gives the same samples, and the same
`keras.utils.set_random_seed` gives the same training run, on every backend."""

import keras
import numpy as np
from keras import ops

import mdn_keras
from reference import random_params


def test_same_int_seed_gives_the_same_samples(rng):
    params = random_params(rng, (256,), 2, 3)
    draw = lambda seed: ops.convert_to_numpy(mdn_keras.sample(params, 2, 3, seed=seed))  # noqa: E731
    first, again, other = draw(42), draw(42), draw(43)
    np.testing.assert_array_equal(first, again)
    assert np.mean(first == other) < 0.01  # a different seed really draws differently


def train(seed):
    """A run with every random part: initialisers, dropout and shuffling."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dropout(0.2),
            mdn_keras.MDN(2, 3),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mdn_keras.MDNLoss(2, 3))
    data = np.random.default_rng(0)
    x = data.normal(size=(96, 3)).astype("float32")
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=-1).astype("float32")
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=True, verbose=0)
    return history.history["loss"], model.get_weights()


def test_same_global_seed_gives_the_same_training_run():
    losses, weights = train(123)
    losses_again, weights_again = train(123)
    assert np.all(np.isfinite(losses))
    assert losses == losses_again
    for a, b in zip(weights, weights_again, strict=True):
        np.testing.assert_array_equal(a, b)
    losses_other, _ = train(124)
    assert losses_other != losses
