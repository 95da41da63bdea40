"""The stepwise trainer against an independent plain-PyTorch training loop."""

import math

import numpy as np
import pytest
import torch

from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.data import dataset_for
from clipviz.engine.trainer import STEP_FIELDS, Trainer


def reference_loop(config, steps: int):
    """nn.Linear + autograd + torch.optim + torch's clip utilities, same init and batches."""
    trainer = Trainer(config)  # only to borrow the initial weights
    data = dataset_for(config)
    w1, b1, w2, b2 = (
        trainer.initial_params[s.offset : s.offset + s.size].view(*s.shape)
        for s in trainer.layout.specs
    )
    model = torch.nn.Sequential(
        torch.nn.Linear(20, config.width), torch.nn.ReLU(), torch.nn.Linear(config.width, 1)
    )
    with torch.no_grad():
        model[0].weight.copy_(w1.T)
        model[0].bias.copy_(b1)
        model[2].weight.copy_(w2.T)
        model[2].bias.copy_(b2)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    else:
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    # The trainer's documented batch order: one permutation per epoch from this generator.
    gen = torch.Generator().manual_seed(10_007 * config.seed + 17)
    losses, norms = [], []
    per_epoch = math.ceil(500 / config.batch_size)
    for step in range(steps):
        within = step % per_epoch
        if within == 0:
            perm = torch.randperm(500, generator=gen)
        idx = perm[within * config.batch_size : (within + 1) * config.batch_size]
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        if config.clip_mode == "norm":
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        else:
            # The norm of the loss's gradient including the L2 penalty's share.
            total = torch.nn.utils.get_total_norm(
                [p.grad + config.weight_decay * p.detach() for p in model.parameters()]
            )
            if config.clip_mode == "value":
                torch.nn.utils.clip_grad_value_(model.parameters(), config.clip_value)
        losses.append(loss.item())
        norms.append(total.item())
        if not (math.isfinite(losses[-1]) and math.isfinite(norms[-1])):
            break
        optimizer.step()
    return np.array(losses), np.array(norms)


@pytest.mark.parametrize(
    "changes",
    [
        {"clip_mode": "norm", "clip_norm": 1.0},
        {"clip_mode": "value", "clip_value": 5.0},
        {"target_scaling": "standardize"},
        {"target_scaling": "standardize", "optimizer": "adam", "lr": 0.003},
        # Unclipped, an L2 penalty on the loss is torch.optim's weight_decay.
        {"target_scaling": "standardize", "weight_decay": 0.1},
        {"target_scaling": "standardize", "optimizer": "adam", "lr": 0.003, "weight_decay": 0.05},
    ],
)
def test_trainer_matches_plain_pytorch_loop(changes):
    config = DEFAULT.replace(**changes)
    steps = 60
    ref_loss, ref_norm = reference_loop(config, steps)
    trainer = Trainer(config)
    trainer.step(steps)
    rec = trainer.records()
    np.testing.assert_allclose(rec["loss"], ref_loss, rtol=2e-3)
    np.testing.assert_allclose(rec["grad_norm"], ref_norm, rtol=2e-3)


def test_explosion_is_recorded_at_the_step_the_reference_loop_overflows():
    config = PRESETS["tutorial_unscaled"].config
    ref_loss, ref_norm = reference_loop(config, 200)
    first_bad = next(
        i
        for i in range(len(ref_loss))
        if not (math.isfinite(ref_loss[i]) and math.isfinite(ref_norm[i]))
    )
    trainer = Trainer(config).run()
    assert trainer.done
    assert trainer.exploded_at == first_bad + 1  # steps are 1-based
    assert trainer.step_count == trainer.exploded_at  # a single run stops there
    assert trainer.explosion.quantity in ("loss", "gradient", "weights")
    assert (
        trainer.explosion.grad_norm_before is not None and trainer.explosion.grad_norm_before > 1e3
    )
    rec = trainer.records()
    assert np.isfinite(rec["loss"][:first_bad]).all()


def test_same_seed_gives_identical_records():
    config = DEFAULT.replace(clip_mode="value", clip_value=5.0, epochs=3)
    a, b = Trainer(config).run(), Trainer(config).run()
    ra, rb = a.records(), b.records()
    for key in (*STEP_FIELDS, "layer_grad_norm"):
        np.testing.assert_array_equal(ra[key], rb[key])
    np.testing.assert_array_equal(a.epoch_train_loss, b.epoch_train_loss)
    c = Trainer(config.replace(seed=2)).run()
    assert not np.array_equal(ra["loss"], c.records()["loss"])


def test_stepping_in_pieces_equals_one_run():
    config = DEFAULT.replace(clip_mode="norm", epochs=2)
    whole = Trainer(config).run()
    pieces = Trainer(config)
    for n in (1, 5, 7, 3, 100):
        pieces.step(n)
    assert pieces.step_count == whole.step_count == 32
    for key in STEP_FIELDS:
        np.testing.assert_array_equal(whole.records()[key], pieces.records()[key])


def test_records_describe_what_clipping_did():
    trainer = Trainer(DEFAULT.replace(clip_mode="norm", clip_norm=1.0, epochs=2)).run()
    rec = trainer.records()
    clipped = rec["clipped"] > 0
    assert clipped.all()  # the unscaled target's gradients are far above 1
    np.testing.assert_allclose(rec["grad_norm_after"][clipped], 1.0, rtol=1e-4)
    np.testing.assert_allclose(rec["cosine"], 1.0, atol=1e-4)
    np.testing.assert_allclose(
        rec["clip_scale"], rec["grad_norm_after"] / rec["grad_norm"], rtol=1e-5
    )
    assert rec["layer_grad_norm"].shape == (32, 2)
    np.testing.assert_allclose(
        np.linalg.norm(rec["layer_grad_norm"], axis=1), rec["grad_norm"], rtol=1e-4
    )
    assert (rec["max_abs_grad"] <= rec["grad_norm"] * (1 + 1e-6)).all()
    assert (rec["update_ratio"] > 0).all()
    epochs = trainer.epoch_records()
    assert len(epochs["train_loss"]) == 2 and np.isfinite(epochs["test_loss"]).all()

    value = Trainer(DEFAULT.replace(clip_mode="value", clip_value=5.0, epochs=1)).run().records()
    assert (value["cosine"] < 1.0 - 1e-6).any()  # value clipping turns the gradient
    assert ((value["clipped_fraction"] > 0) & (value["clipped_fraction"] < 1)).any()


def test_twin_runs_share_init_and_batches():
    """Two trainers with the same seed and batch size start from the same weights
    and see the same batches: the Lab's twin runs rely on it."""
    clipped = PRESETS["tutorial_clip_norm"].config
    primary, twin = Trainer(clipped), Trainer(clipped.replace(clip_mode="none"))
    torch.testing.assert_close(primary.params, twin.params, rtol=0, atol=0)
    primary.step(30)
    twin.step(30)
    a, b = primary.records(), twin.records()
    assert a["loss"][0] == b["loss"][0]  # same weights and batch at step 1
    assert a["grad_norm"][0] == b["grad_norm"][0]
    assert twin.exploded_at is not None and primary.exploded_at is None
    assert primary.step_count == 30 and twin.step_count == twin.exploded_at


def test_result_is_the_run_frozen_and_reports_what_the_cli_prints():
    trainer = Trainer(PRESETS["tutorial_clip_norm"].config.replace(epochs=3)).run()
    result = trainer.result()
    train, test = trainer.final_losses()
    assert result.steps == trainer.total_steps and result.exploded_at is None
    assert result.final_train_mse == pytest.approx(float(train[0]), rel=1e-6)
    assert result.final_test_mse == pytest.approx(float(test[0]), rel=1e-6)
    norms = trainer.records()["grad_norm"]
    assert result.max_grad_norm == float(norms.max())
    assert result.clipped_fraction == float(trainer.records()["clipped"].mean())
    document = result.as_dict()
    assert document["steps"] == trainer.total_steps and document["exploded_at"] is None
    exploded = Trainer(PRESETS["tutorial_unscaled"].config).run().result()
    assert exploded.exploded_at is not None
    assert math.isnan(exploded.final_test_loss) and exploded.as_dict()["final_test_loss"] is None


def test_result_between_epochs_measures_the_current_weights():
    trainer = Trainer(PRESETS["tutorial_clip_norm"].config)
    trainer.step(trainer.batches_per_epoch + 5)
    result = trainer.result(evaluate_now=True)
    _, test = trainer.final_losses(original_units=False)
    assert result.final_test_loss == pytest.approx(float(test[0]), rel=1e-6)


def test_memory_is_fixed_up_front():
    trainer = Trainer(DEFAULT.replace(clip_mode="norm", epochs=20))
    before = trainer.memory_bytes()
    trainer.run()
    assert trainer.memory_bytes() == before
    assert before < 20 * 2**20


def test_lanes_equal_single_runs():
    config = DEFAULT.replace(clip_mode="norm", epochs=3)
    lrs, norms = [0.01, 0.003, 0.05], [1.0, 0.5, 3.0]
    lanes = Trainer(config, n_lanes=3, lr=lrs, clip_norm=norms).run()
    for lane, (lr, c) in enumerate(zip(lrs, norms, strict=True)):
        single = Trainer(config.replace(lr=lr, clip_norm=c)).run()
        np.testing.assert_allclose(lanes.records(lane)["loss"], single.records()["loss"], rtol=1e-4)


def test_reproduction_outcomes_hold_over_five_seeds():
    from clipviz.lessons.experiments import EXPERIMENT_BY_NAME, run_experiment

    seeds = range(5)
    no_clip = run_experiment(EXPERIMENT_BY_NAME["no_clip"], seeds)
    assert no_clip.exploded_runs >= 4
    rows = {}
    for name in ("clip_norm_1", "clip_value_5", "standardized_target", "clip_norm_1_value_5"):
        result = run_experiment(EXPERIMENT_BY_NAME[name], seeds)
        assert result.exploded_runs == 0, name
        assert all(math.isfinite(v) for v in result.test_mse), name
        rows[name] = result.as_row()
    assert rows["clip_norm_1"]["train_mse_median"] < 50
    assert rows["clip_value_5"]["test_mse_median"] < 200
