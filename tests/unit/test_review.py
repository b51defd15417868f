"""The review workflow on a real MLflow registry (SQLite in a temporary home): the gate's
three outcomes, manual approval, promotion and rollback with who/when/why on the versions."""

from __future__ import annotations

import os
from datetime import date

import pytest

from models.registry import CHAMPION, alias_version, client
from reelrank.settings import get_settings
from tests.unit.test_cli import _register_tiny_rankers, run_cli
from training.evaluate import Metrics
from training.pipeline import gate_and_promote
from training.results import HeadsSummary, TrainingResult
from training.review import PENDING, ReviewError, promote, rollback

pytestmark = pytest.mark.unit
HOLDOUT = date(2025, 7, 9)


@pytest.fixture
def registry(tmp_path):
    s = get_settings(home=tmp_path / "h")
    c = client(s)
    c.create_registered_model(s.ranker_model_name)
    for _ in range(3):
        c.create_model_version(s.ranker_model_name, source=str(tmp_path))
    return s, c


def _trained(s, version: str, challenger: float, champion: float | None = None) -> TrainingResult:
    """What the training step hands the gate."""
    info = {
        "window": {"train_start": "2025-07-02", "train_end": "2025-07-08", "holdout": "2025-07-09"},
        "rows": {"train": 100, "holdout": 10},
        "join": {"train": {}},
    }
    metrics = {
        "challenger": Metrics(challenger, 0.9, 10, 100),
        "popularity": Metrics(0.60, 0.6, 10, 100),
        "recent_popularity": Metrics(0.58, 0.6, 10, 100),
    }
    if champion is not None:
        metrics["champion"] = Metrics(champion, 0.9, 10, 100)
    return TrainingResult(
        version=version,
        run_id="",
        holdout=HOLDOUT.isoformat(),
        champion_version=None,
        retrieval_version=None,
        blockers=[],
        checks={},
        metrics=metrics,
        heads=HeadsSummary({"value": 1.0}),
        info=info,
    )


def test_the_gate_promotes_and_records_who_and_why(registry):
    s, c = registry
    out = gate_and_promote(s, _trained(s, "1", 0.80))
    assert out.promoted and not out.pending_approval
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "1"
    tags = c.get_model_version(s.ranker_model_name, "1").tags
    assert tags["promoted_by"] == "gate" and tags["promoted_at"]
    assert "popularity 0.6000" in tags["promoted_why"] and tags["gate_verdict"] == "passed"


def test_the_gate_rejects_a_challenger_that_does_not_beat_the_champion(registry):
    s, c = registry
    gate_and_promote(s, _trained(s, "1", 0.80))
    out = gate_and_promote(s, _trained(s, "2", 0.79, champion=0.80))
    assert not out.promoted and not out.pending_approval
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "1"
    tags = c.get_model_version(s.ranker_model_name, "2").tags
    assert tags["gate_verdict"] == "failed" and tags["review_status"] == "rejected by the gate"
    assert "0.7900 <= champion 0.8000" in tags["gate_reasons"]


def test_manual_approval_holds_a_passing_challenger_until_promoted(registry):
    s, c = registry
    gate_and_promote(s, _trained(s, "1", 0.80))
    s_manual = s.model_copy(update={"gate": s.gate.model_copy(update={"manual_approval": True})})
    out = gate_and_promote(s_manual, _trained(s_manual, "2", 0.85, champion=0.80))
    assert out.pending_approval and not out.promoted
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "1"  # nothing deployed yet
    assert alias_version(c, s.ranker_model_name, PENDING) == "2"
    assert c.get_model_version(s.ranker_model_name, "2").tags["review_status"] == PENDING

    move = promote(c, s.ranker_model_name, "2", "alice", "reviewed the slices")
    assert (move.previous, move.version) == ("1", "2")
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "2"
    assert alias_version(c, s.ranker_model_name, PENDING) is None  # approval consumed
    tags = c.get_model_version(s.ranker_model_name, "2").tags
    assert tags["promoted_by"] == "alice" and tags["promoted_why"] == "reviewed the slices"
    assert tags["previous_champion"] == "1"


def test_rollback_restores_the_previous_champion_step_by_step(registry):
    s, c = registry
    name = s.ranker_model_name
    with pytest.raises(ReviewError, match="no champion"):
        rollback(c, name, "bob", "nothing yet")
    promote(c, name, "1", "gate", "first")
    with pytest.raises(ReviewError, match="nothing to roll back"):
        rollback(c, name, "bob", "no predecessor")
    promote(c, name, "2", "gate", "second")
    promote(c, name, "3", "gate", "third")
    move = rollback(c, name, "bob", "v3 hurts completion")
    assert (move.previous, move.version) == ("3", "2")
    assert alias_version(c, name, CHAMPION) == "2"
    v3 = c.get_model_version(name, "3").tags
    assert v3["rolled_back_by"] == "bob" and v3["rolled_back_why"] == "v3 hurts completion"
    assert v3["review_status"] == "rolled back to v2"
    assert c.get_model_version(name, "2").tags["restored_by"] == "bob"
    rollback(c, name, "bob", "again")
    assert alias_version(c, name, CHAMPION) == "1"
    with pytest.raises(ReviewError, match="no version"):
        promote(c, name, "9", "bob", "typo")


def test_cli_promote_and_rollback_record_the_reviewer(tmp_path):
    # real (tiny) models: the CLI loads a version as serving would before moving the alias
    s = get_settings(home=tmp_path / "h")
    c = client(s)
    _register_tiny_rankers(s, 2)
    env = {**os.environ, "REELRANK_HOME": str(s.home), "COLUMNS": "200"}
    for v in ("1", "2"):
        out = run_cli("models", "promote", v, "--why", f"ship v{v}", "--who", "carol", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    assert c.get_model_version(s.ranker_model_name, "2").tags["promoted_by"] == "carol"
    out = run_cli("models", "rollback", "--why", "bad day", env=env)
    assert out.returncode == 0 and "v2 -> v1" in out.stdout
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "1"
    listing = run_cli("models", "list", env=env)
    assert "rolled back to v1" in listing.stdout
    nothing = run_cli("models", "rollback", "--model", "retrieval", env=env)
    assert nothing.returncode == 1 and "error:" in nothing.stderr
