"""Data sets and target scaling."""

import io

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


# ---- the shipped MLP data sets --------------------------------------------------------

from clipviz.engine import budget  # noqa: E402
from clipviz.engine.config import DATA_SETS, ConfigError, TrainConfig  # noqa: E402
from clipviz.engine.data import (  # noqa: E402
    MLP_DATA,
    choose_columns,
    guess_columns,
    mlp_arrays,
    mlp_dataset,
    read_upload,
    upload_problems,
    uploaded_dataset,
)
from clipviz.engine.trainer import Trainer  # noqa: E402


def test_every_data_choice_is_shipped_and_budgeted():
    assert set(DATA_SETS) == set(MLP_DATA) == set(budget.DATA_SHAPES)


@pytest.mark.parametrize("name", DATA_SETS)
def test_shipped_data_sets_load_offline_split_in_half(name, monkeypatch):
    # No network: any attempt to open a socket fails the test.
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a shipped data set tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    mlp_arrays.cache_clear()
    x, y = mlp_arrays(name)
    data = mlp_dataset(name, "none")
    n_train = len(x) // 2
    assert data.shape == budget.DATA_SHAPES[name]  # the budget counts the real shape
    assert data.n_train == n_train and data.x_test.shape[0] == len(x) - n_train
    # The target is the data set's own, unscaled, in file order: first half trains.
    np.testing.assert_allclose(data.y_train[:, 0].numpy(), y[:n_train], rtol=1e-6)
    np.testing.assert_allclose(data.y_test[:, 0].numpy(), y[n_train:], rtol=1e-6)
    if MLP_DATA[name].standardize_inputs:  # on the training rows only
        train = data.x_train.double().numpy()
        np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(train.std(axis=0), 1, rtol=1e-4)
        expected = (x[n_train:] - x[:n_train].mean(0)) / x[:n_train].std(0)
        np.testing.assert_allclose(data.x_test.numpy(), expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(data.x_train.numpy(), x[:n_train], rtol=1e-6)


def test_the_variants_are_the_reference_problem_changed_in_one_way():
    x0, y0 = mlp_arrays("reference")
    x1, y1 = mlp_arrays("regression_noisy")
    x2, y2 = mlp_arrays("regression_large")
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(x0, x2)
    assert 15 < np.std(y1 - y0) < 25  # noise 20 instead of 0.1
    np.testing.assert_allclose(y2, 10 * y0)


def test_diabetes_is_scikit_learns_table():
    from sklearn.datasets import load_diabetes

    table = load_diabetes(scaled=False)
    x, y = mlp_arrays("diabetes")
    np.testing.assert_array_equal(x, table.data)
    np.testing.assert_array_equal(y, table.target)


@pytest.mark.parametrize("name", ["diabetes", "friedman"])
def test_the_mlp_adapts_its_input_size_and_target_scaling_works(name):
    config = TrainConfig(data=name, target_scaling="standardize", epochs=2)
    trainer = Trainer(config).run()
    assert trainer.model.n_inputs == budget.DATA_SHAPES[name].features
    assert trainer.layout.specs[0].shape == (budget.DATA_SHAPES[name].features, 25)
    assert trainer.exploded_at is None
    train = trainer.data.y_train[:, 0].double().numpy()
    assert abs(train.mean()) < 1e-5 and train.std() == pytest.approx(1.0, rel=1e-4)


def test_data_is_a_setting_of_the_mlp_only():
    assert "data" in TrainConfig().relevant_keys()
    assert "data" not in TrainConfig(network="lstm").relevant_keys()
    config, problems = TrainConfig.from_params({"data": "diabetes"})
    assert config.data == "diabetes" and not problems
    assert TrainConfig.from_params(config.to_params())[0] == config
    _, problems = TrainConfig.from_params({"data": "iris"})
    assert problems[0].key == "data" and "unknown value 'iris'" in problems[0].message
    # Steps per epoch follow the data set's own training rows (221 for diabetes).
    assert config.total_steps_estimate() == 100 * -(-221 // 32)
    assert dataset_for(config).name == "diabetes"


# ---- your own CSV ----------------------------------------------------------------------


def make_csv(rows: int = 60, *, header: str = "a,b,c,price", seed: int = 0) -> bytes:
    """A well-formed upload: three features and a target that depends on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    y = 3 * x[:, 0] - 0.2 * x[:, 1] + 0.01 * x[:, 2] + rng.normal(scale=0.1, size=rows)
    lines = [header] + [
        ",".join(f"{v:.6g}" for v in (*xi, yi)) for xi, yi in zip(x, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def only_problem(result) -> str:
    assert isinstance(result, list) and len(result) >= 1, result
    return result[0]


def test_a_good_csv_becomes_a_dataset_split_like_the_reference():
    raw = make_csv(61)
    data = uploaded_dataset(raw, filename="houses.csv")
    assert not isinstance(data, list), data
    assert data.uploaded and data.source == "houses.csv"
    assert data.n_features == 3 and data.n_train == 30 and data.x_test.shape[0] == 31
    # The target is the file's last numeric column, untouched ("none"), in file order.
    values = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1)
    np.testing.assert_allclose(data.y_train[:, 0].numpy(), values[:30, 3], rtol=1e-6)
    # Inputs standardized with the training rows' statistics.
    mean, std = values[:30, :3].mean(0), values[:30, :3].std(0)
    np.testing.assert_allclose(
        data.x_test.numpy(), (values[30:, :3] - mean) / std, rtol=1e-5, atol=1e-5
    )


def test_columns_can_be_chosen_and_the_guess_is_the_last_numeric_column():
    raw = b"name,x1,x2,y\n" + b"".join(f"row{i},{i},{i % 7},{2 * i}\n".encode() for i in range(30))
    table = read_upload(raw)
    assert guess_columns(table) == ("y", ("x1", "x2"))
    chosen = choose_columns(table, "x1", ["x2"])
    assert chosen.features == ("x2",) and chosen.target == "x1"
    np.testing.assert_array_equal(chosen.y, np.arange(30))


def test_semicolon_and_tab_files_and_a_byte_order_mark_read():
    for delimiter in (";", "\t"):
        raw = make_csv(40).decode().replace(",", delimiter).encode("utf-8-sig")
        data = uploaded_dataset(raw)
        assert not isinstance(data, list), data
        assert data.n_features == 3


BIG_CELLS = "9" * 60


@pytest.mark.parametrize(
    "raw, target, features, words",
    [
        (b"", None, None, "the file is empty"),
        (b"  \n\n", None, None, "the file is empty"),
        (b"PK\x03\x04\x14\x00", None, None, "zip archive"),
        (b"a,b\n1,2\n\xe9,3\n", None, None, "not UTF-8 text: byte 0xe9"),
        ("a,b\n1,2\n".encode("utf-16"), None, None, "UTF-16"),
        (b"a,b\x00\x01\n", None, None, "binary data"),
        (b'a,b\n"1,2\n', None, None, "not a CSV: line 2"),
        (b"a,b\n1,2\n3,4,5\n", None, None, "line 3 has 3 fields, but the header names 2 columns"),
        (b"price\n" + b"1\n" * 30, None, None, "only one column ('price')"),
        (b"name,city\n" + b"ann,paris\n" * 30, None, None, "no column holds numbers only"),
        (b"a,b\n", None, None, "a header but no rows of data"),
        (b"a,b\n" + b"1,2\n" * 5, None, None, "too few rows: 5 rows of data, at least 20"),
        (b"a,b\n" + b"1,2\n" * 20_001, None, None, "more than 20,000 rows"),
        (
            ",".join(f"c{i}" for i in range(101)).encode() + b"\n",
            None,
            None,
            "101 columns, above the limit of 100",
        ),
        (
            b"x,y\n" + b"1,2\n" * 30 + b"oops,2\n",
            "y",
            ["x"],
            "column 'x' has a cell that is not a number on line 32: 'oops'",
        ),
        (b"x,y\n" + b"1,2\n" * 30 + b"1,\n", "y", ["x"], "column 'y' has an empty cell on line 32"),
        (b"x,y\n" + b"1,2\n" * 30 + b"nan,2\n", "y", ["x"], "column 'x' holds NaN on line 32"),
        (
            b"x,y\n" + b"1,2\n" * 30 + b"1,-inf\n",
            "y",
            ["x"],
            "column 'y' holds an infinite value on line 32",
        ),
        (b"x,y\n" + b"1,2\n" * 30 + b"1,1e39\n", "y", ["x"], "too large for the network's float32"),
        (b"x,y\n" + b"1,5\n2,5\n" * 15, "y", ["x"], "the target 'y' is 5 on every row"),
        (make_csv(), "nope", ["a"], "there is no column 'nope'"),
        (make_csv(), "price", ["a", "zz"], "no column 'zz'"),
        (make_csv(), "price", ["a", "price"], "cannot also be a feature"),
        (make_csv(), "price", [], "choose at least one feature"),
    ],
)
def test_each_bad_file_gets_its_one_line_message(raw, target, features, words):
    problem = only_problem(uploaded_dataset(raw, target, features))
    assert words in problem
    assert "\n" not in problem and "Traceback" not in problem


def test_text_in_a_column_nobody_chose_is_fine():
    raw = b"note,x,y\n" + b"".join(f"n{i},{i},{i * i}\n".encode() for i in range(30))
    data = uploaded_dataset(raw)
    assert not isinstance(data, list) and data.n_features == 1


def test_a_file_over_the_upload_limit_is_refused_before_it_is_read():
    raw = b"x,y\n" + b"1,2\n" * (budget.MAX_UPLOAD_BYTES // 4 + 1)
    assert len(raw) > budget.MAX_UPLOAD_BYTES
    problem = only_problem(read_upload(raw))
    assert problem == "the file is 5.0 MB, above the limit of 5 MB"


def test_the_streamlit_upload_limit_matches_the_budget():
    import pathlib
    import tomllib

    config = tomllib.loads(
        (pathlib.Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text()
    )
    assert config["server"]["maxUploadSize"] * 2**20 == budget.MAX_UPLOAD_BYTES


def test_an_uploaded_csv_trains_through_the_trainer_and_can_explode():
    raw = make_csv(200, seed=3)
    chosen = choose_columns(read_upload(raw), filename="mine.csv")
    # Scaled target, clipped: it learns (test MSE well below the target's variance).
    config = TrainConfig(target_scaling="standardize", clip_mode="norm", epochs=20)
    trainer = Trainer(config, dataset=chosen.dataset(config.target_scaling)).run()
    assert trainer.exploded_at is None
    _, test = trainer.final_losses()
    assert test[0] < 0.1 * float(np.var(chosen.y[100:]))
    assert trainer.model.n_inputs == 3 and trainer.layout.specs[0].shape == (3, 25)
    # A large target and a large learning rate explode, as on the reference data.
    big = make_csv(200, seed=3).decode().splitlines()
    big = [big[0]] + [
        ",".join(r.split(",")[:3] + [str(float(r.split(",")[3]) * 1e4)]) for r in big[1:]
    ]
    chosen_big = choose_columns(read_upload("\n".join(big).encode()))
    wild = Trainer(TrainConfig(lr=0.1, epochs=5), dataset=chosen_big.dataset("none")).run()
    assert wild.exploded_at is not None


def test_the_budget_counts_the_uploads_own_rows():
    rows = 20_000
    raw = b"x,y\n" + b"".join(f"{i % 97},{i % 13}\n".encode() for i in range(rows))
    chosen = choose_columns(read_upload(raw))
    assert chosen.shape == budget.DataShape(1, 10_000, 10_000)
    ok = TrainConfig(epochs=10)
    assert upload_problems(ok, chosen) == []
    heavy = TrainConfig(epochs=1000, batch_size=1)  # 10 million steps on this file
    problems = upload_problems(heavy, chosen)
    assert problems and problems[0].key == "epochs" and "too many" in problems[0].message
    with pytest.raises(ConfigError):
        Trainer(heavy, dataset=chosen.dataset())
    assert upload_problems(TrainConfig(network="lstm"), chosen)[0].key == "network"


def test_a_lab_run_and_its_twin_train_on_an_upload():
    from clipviz.app.lab import LabRun
    from clipviz.engine.labstate import LabState

    chosen = choose_columns(read_upload(make_csv(100, seed=4)))
    config = TrainConfig(clip_mode="norm", epochs=2)
    twin = LabState(config, twin=True).twin_config
    run = LabRun(config, twin, dataset=chosen.dataset(config.target_scaling))
    run.step(200)
    assert all(t.data.uploaded and t.model.n_inputs == 3 for t in run.trainers)
    # Same data, same init, same batches: the first loss of the twins agrees.
    first = [t.records()["loss"][0] for t in run.trainers]
    assert first[0] == first[1]
