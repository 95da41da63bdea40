"""skip_nonfinite: a step with a non-finite loss or gradient is skipped, not fatal.

Checked against a plain PyTorch loop that does what ``torch.amp.GradScaler``
and ``optax.apply_if_finite`` do -- no optimizer step when the gradient is not
finite -- and against the trainer's own promises: the weights and optimizer
state are untouched by a skipped step, lanes skip independently, and a run
that keeps skipping ends, saying so.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.data import dataset_for
from clipviz.engine.labstate import LabState
from clipviz.engine.trainer import SKIP_LIMIT, Trainer

POISONED_ROW = 7  # a training row with an infinite input: its batch's loss is NaN


def poisoned(config):
    """The config's data with one training input set to +inf."""
    data = dataset_for(config)
    x_train = data.x_train.clone()
    x_train[POISONED_ROW, 0] = math.inf
    return dataclasses.replace(data, x_train=x_train)


def reference_loop(config, data, steps: int):
    """nn.Linear + autograd + torch.optim; a non-finite step is not taken (GradScaler's rule)."""
    trainer = Trainer(config, dataset=data)  # only to borrow the initial weights
    w1, b1, w2, b2 = (
        trainer.initial_params[s.offset : s.offset + s.size].view(*s.shape)
        for s in trainer.layout.specs
    )
    model = torch.nn.Sequential(
        torch.nn.Linear(20, config.width), torch.nn.ReLU(), torch.nn.Linear(config.width, 1)
    )
    with torch.no_grad():
        for layer, w, b in ((model[0], w1, b1), (model[2], w2, b2)):
            layer.weight.copy_(w.T)
            layer.bias.copy_(b)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(10_007 * config.seed + 17)
    per_epoch = math.ceil(500 / config.batch_size)
    losses, skipped = [], []
    for step in range(steps):
        within = step % per_epoch
        if within == 0:
            perm = torch.randperm(500, generator=gen)
        idx = perm[within * config.batch_size : (within + 1) * config.batch_size]
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
        if config.clip_mode == "norm" and math.isfinite(total.item()):
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        losses.append(loss.item())
        bad = not (math.isfinite(loss.item()) and math.isfinite(total.item()))
        skipped.append(bad)
        if not bad:
            optimizer.step()
    return np.array(losses), np.array(skipped)


@pytest.mark.parametrize(
    "changes",
    [
        {"clip_mode": "norm", "clip_norm": 1.0},
        {"target_scaling": "standardize", "optimizer": "adam", "lr": 0.003},
    ],
    ids=["sgd-clip-norm", "adam"],
)
def test_skipping_equals_a_loop_that_does_not_step_on_a_non_finite_gradient(changes):
    config = DEFAULT.replace(skip_nonfinite=True, epochs=4, **changes)
    data = poisoned(config)
    steps = 4 * 16
    ref_loss, ref_skipped = reference_loop(config, data, steps)
    trainer = Trainer(config, dataset=data).run()
    rec = trainer.records()
    assert trainer.exploded_at is None and trainer.step_count == steps
    np.testing.assert_array_equal(rec["skipped"] > 0, ref_skipped)
    assert ref_skipped.sum() == 4  # the poisoned row's batch, once an epoch
    assert int(trainer.skipped_steps[0]) == 4 and trainer.result().as_dict()["skipped_steps"] == 4
    finite = np.isfinite(ref_loss)
    np.testing.assert_allclose(rec["loss"][finite], ref_loss[finite], rtol=2e-3)


def test_without_the_switch_the_same_run_ends_at_the_bad_batch():
    config = DEFAULT.replace(clip_mode="norm", epochs=4)
    data = poisoned(config)
    skipping = Trainer(config.replace(skip_nonfinite=True), dataset=data).run()
    first_skip = int(np.argmax(skipping.records()["skipped"] > 0)) + 1
    ending = Trainer(config, dataset=data).run()
    assert ending.exploded_at == first_skip and ending.explosion.quantity == "loss"


def test_a_skipped_step_leaves_weights_and_optimizer_state_untouched():
    config = DEFAULT.replace(clip_mode="norm", skip_nonfinite=True, epochs=2)
    data = poisoned(config)
    probe = Trainer(config, dataset=data).run()
    bad_step = int(np.argmax(probe.records()["skipped"] > 0))  # 0-based
    trainer = Trainer(config, dataset=data)
    trainer.step(bad_step)
    params, velocity = trainer.params.clone(), trainer.velocity.clone()
    trainer.step(1)
    assert torch.equal(trainer.params, params) and torch.equal(trainer.velocity, velocity)
    rec = trainer.records()
    assert rec["skipped"][-1] == 1 and rec["clipped"][-1] == 0
    assert math.isnan(rec["grad_norm_after"][-1]) and math.isnan(rec["clip_threshold"][-1])
    assert rec["update_ratio"][-1] == 0
    trainer.step(1)
    assert not torch.equal(trainer.params, params)  # the next batch moves them again


def test_a_run_that_keeps_skipping_ends_and_says_so():
    config = PRESETS["tutorial_unscaled"].config.replace(skip_nonfinite=True)
    trainer = Trainer(config).run()
    explosion = trainer.explosion
    assert explosion is not None and explosion.quantity == "skipping"
    assert trainer.done and trainer.step_count == explosion.step
    rec = trainer.records()
    assert (rec["skipped"][-SKIP_LIMIT:] == 1).all() and rec["skipped"][-SKIP_LIMIT - 1] == 0
    assert int(trainer.skipped_steps[0]) == SKIP_LIMIT
    assert f"{SKIP_LIMIT} steps in a row were skipped" in explosion.describe()
    # Without the switch the same run ends at the first of those steps.
    plain = Trainer(PRESETS["tutorial_unscaled"].config).run()
    assert plain.exploded_at == explosion.step - SKIP_LIMIT + 1


def test_lanes_skip_independently():
    # Lane 1's cap is so high that it does not clip: it overflows and skips until it
    # ends; lane 0 clips at 1 and trains. Each equals its own single run.
    config = PRESETS["tutorial_unscaled"].config.replace(
        clip_mode="norm", skip_nonfinite=True, epochs=3
    )
    lanes = Trainer(config, n_lanes=2, clip_norm=[1.0, 1e9]).run()
    for lane, c in enumerate((1.0, 1e9)):
        single = Trainer(config.replace(clip_norm=c)).run()
        steps = single.step_count
        np.testing.assert_allclose(
            lanes.records(lane)["loss"][:steps], single.records()["loss"], rtol=1e-4
        )
        np.testing.assert_array_equal(
            lanes.records(lane)["skipped"][:steps], single.records()["skipped"]
        )
        ours, theirs = lanes.explosions[lane], single.explosion
        assert (ours and (ours.step, ours.quantity)) == (theirs and (theirs.step, theirs.quantity))
    assert lanes.explosions[0] is None and lanes.explosions[1].quantity == "skipping"


def test_the_switch_round_trips_through_links():
    config = DEFAULT.replace(skip_nonfinite=True)
    assert config.to_params()["skip_nonfinite"] == "true"
    assert "skip_nonfinite" not in LabState(DEFAULT).to_params()  # off: links leave it out
    assert LabState(config).to_params()["skip_nonfinite"] == "true"
    parsed, problems = type(config).from_params({"skip_nonfinite": "true"})
    assert parsed.skip_nonfinite is True and not problems
    _, problems = type(config).from_params({"skip_nonfinite": "maybe"})
    assert problems and problems[0].key == "skip_nonfinite"
