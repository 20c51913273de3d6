"""Curriculum phases scaled to the epoch count, and the warm-up + cosine learning rate."""

import math

import pytest

from sam3d_eval.train.curriculum import STAGE1_SCHEDULE, curriculum_phases, lr_at, phase_of


def test_hundred_epochs_is_the_recipe():
    ph = curriculum_phases(100)
    assert [(p.start, p.end, p.synthetic_fraction) for p in ph] == [(0, 20, 0.8), (20, 50, 0.5), (50, 90, 0.2), (90, 100, 0.0)]


@pytest.mark.parametrize("epochs", [4, 5, 7, 10, 13, 37, 1000])
def test_scaled_phases_cover_every_epoch_once(epochs):
    ph = curriculum_phases(epochs)
    assert ph[0].start == 0 and ph[-1].end == epochs
    assert all(a.end == b.start for a, b in zip(ph, ph[1:]))
    assert all(p.epochs >= 1 for p in ph)
    for p, share in zip(ph, (0.2, 0.3, 0.4, 0.1)):
        assert abs(p.epochs / epochs - share) <= 1.0 / epochs + 1e-9
    assert phase_of(ph, epochs - 1).name == "real100"


def test_ten_epochs_and_errors():
    assert [p.end for p in curriculum_phases(10)] == [2, 5, 9, 10]
    assert [p.end for p in curriculum_phases(3, STAGE1_SCHEDULE)] == [3]
    with pytest.raises(ValueError, match="at least 4 epochs"):
        curriculum_phases(3)
    with pytest.raises(ValueError, match="outside"):
        phase_of(curriculum_phases(4), 4)


def test_lr_warmup_then_cosine():
    lr = [lr_at(s, 100, 1e-3, 10, 0.1) for s in range(101)]
    assert lr[0] == pytest.approx(1e-4) and lr[9] == pytest.approx(1e-3)
    assert lr[10] == pytest.approx(1e-3)
    assert lr[55] == pytest.approx(1e-4 + 0.5 * 0.9e-3 * (1 + math.cos(math.pi * 0.5)))
    assert lr[100] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
