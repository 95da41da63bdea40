"""Signs of explosion found in real runs: present where they are, silent where all is well.

Each sign's evidence is re-derived here without the app's code where it can be:
the per-node error gradient from autograd on the same weights and batch, dead
ReLU units from a plain forward pass of the trained weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.trainer import Trainer
from clipviz.lessons.diagnose import (
    SIGNS,
    find_signs,
    signs_of,
)


def diagnose(config):
    trainer = Trainer(config).run()
    return trainer, signs_of(trainer)


@pytest.mark.parametrize("seed", range(5))
def test_unscaled_run_shows_the_signs_before_it_explodes(seed):
    trainer, findings = diagnose(PRESETS["tutorial_unscaled"].config.replace(seed=seed))
    keys = {f.key: f.step for f in findings}
    assert trainer.exploded_at is not None
    assert {"weights_grow", "loss_swings", "grads_above_one"} <= set(keys)
    assert keys["weights_grow"] < trainer.exploded_at
    assert keys["grads_above_one"] < trainer.exploded_at
    assert [f.step for f in findings] == sorted(f.step for f in findings)


HEALTHY = {
    "standardized": PRESETS["tutorial_scaled"].config,
    "clip norm 1": PRESETS["tutorial_clip_norm"].config,
    "clip value 5": PRESETS["tutorial_clip_value"].config,
    "norm then value": DEFAULT.replace(clip_mode="norm_value"),
    "lr 0.001": DEFAULT.replace(lr=0.001),
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", list(HEALTHY))
def test_no_sign_fires_on_a_healthy_reference_run(name, seed):
    trainer, findings = diagnose(HEALTHY[name].replace(seed=seed))
    assert trainer.result().learned, "the healthy run learns"
    assert findings == [], [(f.key, f.step, f.detail) for f in findings]


def test_the_per_node_share_is_the_share_of_bias_gradients_above_one():
    """'Error gradient above 1 for each node': a node's error gradient is the gradient of
    the loss with respect to its bias; checked with autograd on the same weights and batch."""
    config = PRESETS["tutorial_unscaled"].config
    trainer = Trainer(config)
    weights = trainer.params[:, 0].clone()
    # The trainer's first batch: its batch order comes from a generator seeded 10_007 s + 17.
    order = torch.randperm(500, generator=torch.Generator().manual_seed(10_007 * config.seed + 17))
    x, y = trainer.data.x_train[order[:32]], trainer.data.y_train[order[:32]]
    trainer.step(1)
    w1 = weights[: 20 * 25].view(20, 25).requires_grad_()
    b1 = weights[500:525].clone().requires_grad_()
    w2 = weights[525:550].view(25, 1).requires_grad_()
    b2 = weights[550:551].clone().requires_grad_()
    loss = ((torch.relu(x @ w1 + b1) @ w2 + b2 - y) ** 2).mean()
    loss.backward()
    node_grads = torch.cat([b1.grad, b2.grad])
    expected = float((node_grads.abs() > 1).float().mean())
    assert trainer.records()["above_one_fraction"][0] == pytest.approx(expected)
    assert expected > 0.5  # the unscaled target: most nodes above 1 from the first step


def test_dead_units_are_dead_in_a_plain_forward_pass():
    """lr 0.5 with clip value 5: nothing overflows, yet every ReLU unit ends dead on every
    training row and the net outputs one constant (the mechanism of 'no improvement')."""
    config = DEFAULT.replace(lr=0.5, clip_mode="value", clip_value=5.0)
    trainer, findings = diagnose(config)
    keys = {f.key: f.step for f in findings}
    assert trainer.exploded_at is None
    assert "dead_units" in keys and "no_progress" in keys
    weights = trainer.params[:, 0]
    w1, b1 = weights[:500].view(20, 25), weights[500:525]
    hidden = torch.relu(trainer.data.x_train @ w1 + b1)
    assert bool((hidden == 0).all())
    outputs = hidden @ weights[525:550].view(25, 1) + weights[550]
    assert float(outputs.max() - outputs.min()) == 0.0  # one constant for every row
    assert not trainer.result().learned


def test_a_log_without_weights_is_read_for_the_signs_it_can_show():
    """A log from another tool has a loss and a norm only: the signs that need more are
    not looked for, and nothing fails."""
    loss = np.array([1.0, 0.9, 0.8, 30.0, np.inf])
    findings = find_signs({"step": np.arange(1, 6), "loss": loss}, batches_per_epoch=2)
    assert [(f.key, f.step) for f in findings] == [("loss_swings", 4), ("loss_nan", 5)]
    assert "infinite" in findings[1].detail


def test_every_sign_has_words():
    assert len(SIGNS) == 7
    assert all(s.title and s.why for s in SIGNS)
