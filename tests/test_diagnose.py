"""Signs of explosion found in real runs, and the fixes suggested for them."""

from clipviz.engine.config import PRESETS
from clipviz.engine.trainer import Trainer
from clipviz.lessons.diagnose import SIGNS, signs_of, suggest_fixes


def diagnose(config):
    trainer = Trainer(config).run()
    return trainer, signs_of(trainer)


def test_unscaled_run_shows_the_signs_before_it_explodes():
    trainer, findings = diagnose(PRESETS["tutorial_unscaled"].config)
    keys = {f.key: f.step for f in findings}
    assert "loss_nan" in keys and keys["loss_nan"] == trainer.exploded_at or "weights_nan" in keys
    assert "weights_grow" in keys and keys["weights_grow"] < trainer.exploded_at
    assert "loss_swings" in keys
    assert [f.step for f in findings] == sorted(f.step for f in findings)
    fixes = {f.key: f for f in suggest_fixes(trainer.config, findings, exploded=True)}
    assert {"clip_norm", "standardize", "lr_div_10"} <= set(fixes)
    assert fixes["clip_norm"].apply(trainer.config).clip_mode == "norm"
    assert fixes["standardize"].apply(trainer.config).target_scaling == "standardize"
    assert fixes["lr_div_10"].apply(trainer.config).lr == 0.001


def test_clipped_run_shows_large_raw_gradients_but_no_nan():
    trainer, findings = diagnose(PRESETS["tutorial_clip_norm"].config.replace(epochs=5))
    keys = {f.key for f in findings}
    assert trainer.exploded_at is None
    assert "loss_nan" not in keys and "weights_nan" not in keys
    assert "grads_above_one" in keys  # the unscaled target's raw gradients stay far above 1


def test_healthy_scaled_run_suggests_nothing():
    trainer, findings = diagnose(PRESETS["tutorial_scaled"].config.replace(epochs=5))
    assert not {f.key for f in findings} & {"loss_nan", "weights_nan", "no_progress"}
    assert suggest_fixes(trainer.config, [], exploded=False) == []


def test_every_sign_has_words():
    assert len(SIGNS) == 6
    assert all(s.title and s.why for s in SIGNS)
