"""The loop's notes on what the data cannot say name the objective that was trained."""

from __future__ import annotations

import pytest

from reelrank.demo import undefined_metrics
from reelrank.settings import get_settings

pytestmark = pytest.mark.unit

REPORT = {
    "signals": {
        "watch_time_s": "missing",
        "completed": "derived: label",
        "liked": "missing: False",
        "commented": "missing: False",
    },
    "defaulted": {},
}


def _notes(tmp_path, **training) -> list[str]:
    s = get_settings(home=tmp_path, dataset="interactions", training=training)
    return [n for n in undefined_metrics(s, REPORT) if ": missing" in n]


def test_a_value_model_is_not_said_to_have_heads(tmp_path):
    """Before: "(its head learns nothing)" for a value model, which trains no heads."""
    notes = _notes(tmp_path, objective="value")
    assert not any("head" in n for n in notes), notes
    assert (
        "liked: missing: False (the value label, completed or liked or shared, goes without it)"
        in notes
    )
    assert "commented: missing: False (the value objective does not use it)" in notes


def test_a_heads_model_names_the_head_that_learns_nothing(tmp_path):
    weights = {"completion": 1.0, "watch": 0.5, "like": 0.0, "share": 1.0, "skip": 0.5}
    notes = _notes(tmp_path, objective="heads", objective_weights=weights)
    assert "watch_time_s: missing (its head, watch, learns nothing)" in notes
    assert "liked: missing: False (its head, like, has weight 0 and is not trained)" in notes
    assert "commented: missing: False (no head uses it)" in notes
