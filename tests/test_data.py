"""Data sets and target scaling."""

import numpy as np
import pytest

from clipviz.engine.config import DEFAULT
from clipviz.engine.data import (
    adding_problem,
    dataset_for,
    digits_rows,
    reference_arrays,
    reference_regression,
)


def test_reference_regression_is_the_tutorials_problem():
    x, y = reference_arrays()
    assert x.shape == (1000, 20) and y.shape == (1000,)
    assert -600 < y.min() < -250 and 250 < y.max() < 600  # "roughly -400..400"
    data = reference_regression("none")
    assert data.x_train.shape == (500, 20) and data.y_test.shape == (500, 1)
    np.testing.assert_allclose(data.y_train[:, 0].numpy(), y[:500], rtol=1e-6)
    np.testing.assert_allclose(data.x_test.numpy(), x[500:], rtol=1e-6)


@pytest.mark.parametrize("kind", ["standardize", "normalize"])
def test_scaling_is_fitted_on_training_rows_only(kind):
    _, y = reference_arrays()
    data = reference_regression(kind)
    train = data.y_train[:, 0].double().numpy()
    if kind == "standardize":
        assert abs(train.mean()) < 1e-5 and train.std() == pytest.approx(1.0, rel=1e-5)
        assert data.scaler.shift == pytest.approx(y[:500].mean())
    else:
        assert train.min() == pytest.approx(0.0, abs=1e-6) and train.max() == pytest.approx(
            1.0, abs=1e-6
        )
    # Test rows use the training statistics, and MSE converts back with the square of the scale.
    test_scaled = data.y_test[:, 0].double().numpy()
    np.testing.assert_allclose(data.scaler.inverse(test_scaled), y[500:], rtol=1e-5, atol=1e-3)
    assert data.to_original_mse(1.0) == pytest.approx(data.scaler.scale**2)


def test_adding_problem_marks_two_steps_and_sums_them():
    x, y = adding_problem(64, 30, seed=0)
    assert x.shape == (64, 30, 2)
    assert (x[:, :, 1].sum(axis=1) == 2).all()
    first_half = x[:, :15, 1].sum(axis=1)
    assert (first_half == 1).all()  # one marker in each half
    np.testing.assert_allclose((x[:, :, 0] * x[:, :, 1]).sum(axis=1), y)


def test_digits_read_row_by_row():
    data = digits_rows(1000)
    assert data.x_train.shape == (1000, 8, 8) and data.kind == "classification"
    assert data.n_outputs == 10 and float(data.x_train.max()) <= 1.0
    assert set(data.y_test.tolist()) == set(range(10))


def test_dataset_for_follows_the_config():
    assert dataset_for(DEFAULT).name == "reference"
    seq = dataset_for(DEFAULT.replace(network="lstm", seq_len=40, n_train=100))
    assert seq.x_train.shape == (100, 40, 2)
