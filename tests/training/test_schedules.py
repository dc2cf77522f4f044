"""Learning-rate schedules: functions of the step only."""

from __future__ import annotations

import pytest

from vqrae.training.schedules import constant_with_warmup, lr_factor


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    values = [lr_factor(s, warmup=10, total=100, final_ratio=0.25) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert lr_factor(100, 10, 100, 0.25) == pytest.approx(0.25)


def test_constant_schedule_holds_after_warmup() -> None:
    assert constant_with_warmup(0, 4000) == pytest.approx(1 / 4000)
    assert constant_with_warmup(3999, 4000) == 1.0
    assert {lr_factor(s, 4000, 10, 0.0, "constant") for s in range(4000, 9000, 500)} == {1.0}
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 1, 1, 0.0, "linear")  # type: ignore[arg-type]
