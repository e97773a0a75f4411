"""Where tensors live. With MDN_KERAS_TEST_DEVICE=gpu the whole suite fails on a CPU
(see conftest.py); this test also checks that the head's output stays on that device."""

import keras
import numpy as np
from conftest import WANTED_DEVICE, tensor_device

import mdn_keras


def test_head_output_stays_on_the_default_device():
    x = keras.ops.convert_to_tensor(np.ones((4, 3), "float32"))
    out = mdn_keras.MDN(2, 3)(x)
    loss = mdn_keras.MDNLoss(2, 3, reduction="none")(keras.ops.zeros((4, 2)), out)
    expected = WANTED_DEVICE if WANTED_DEVICE in ("cpu", "gpu") else tensor_device(x)
    assert tensor_device(out) == expected
    assert tensor_device(loss) == expected
    assert tensor_device(mdn_keras.sample(out, 2, 3, seed=0)) == expected
