from __future__ import annotations

import json
import logging
from datetime import date

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DRIFTED_COUNT, VALUE_DRIFT, alert, check_drift, verdict_from_snapshot

pytestmark = pytest.mark.unit


def snapshot(cols: dict[str, tuple[float, bool]], share: float, drift_share: float) -> dict:
    metrics = [
        {
            "id": "count",
            "config": {"type": DRIFTED_COUNT, "drift_share": drift_share},
            "value": {"count": 1.0, "share": share},
        }
    ]
    tests = []
    for i, (col, (score, failed)) in enumerate(cols.items()):
        metrics.append(
            {
                "id": f"m{i}",
                "value": score,
                "config": {
                    "type": VALUE_DRIFT,
                    "column": col,
                    "method": "Wasserstein distance (normed)",
                    "threshold": 0.1,
                },
            }
        )
        tests.append(
            {"status": "FAIL" if failed else "SUCCESS", "metric_config": {"metric_id": f"m{i}"}}
        )
    return {"metrics": metrics, "tests": tests}


def test_verdict_reads_columns_share_and_threshold():
    v = verdict_from_snapshot(snapshot({"a": (0.5, True), "b": (0.01, False)}, 0.5, 0.3), 10, 20)
    assert v.drifted and v.severity == "critical"
    assert v.drifted_columns == ["a"]
    assert v.columns[0].score == 0.5 and v.columns[0].threshold == 0.1
    assert "DRIFT DETECTED" in v.summary() and "a" in v.summary()


def test_verdict_below_the_share_is_a_warning_not_an_alert(caplog):
    v = verdict_from_snapshot(
        snapshot({"a": (0.5, True), "b": (0.0, False), "c": (0.0, False)}, 1 / 3, 0.5), 10, 20
    )
    assert not v.drifted and v.severity == "warning"
    with caplog.at_level(logging.INFO):
        assert alert(v) is False
    assert "ALERT" not in caplog.text


def test_verdict_rejects_a_snapshot_without_columns():
    with pytest.raises(ValueError):
        verdict_from_snapshot({"metrics": [], "tests": []}, 1, 1)


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 3000
    ref = pd.DataFrame({f"f{i}": rng.normal(0, 1, n) for i in range(5)})
    same = pd.DataFrame({f"f{i}": rng.normal(0, 1, n) for i in range(5)})
    shifted = same.copy()
    shifted["f0"] += 2.0
    shifted["f3"] *= 4.0
    return ref, same, shifted


def test_evidently_flags_the_shifted_columns_and_saves_reports(tmp_path, frames, caplog):
    ref, _, shifted = frames
    v = check_drift(ref, shifted, tmp_path, drift_share=0.3)
    assert v.drifted
    assert set(v.drifted_columns) == {"f0", "f3"}
    assert v.share_drifted == pytest.approx(0.4)
    assert (tmp_path / "drift_report.html").stat().st_size > 10_000
    assert json.loads((tmp_path / "verdict.json").read_text())["drifted_columns"] == ["f0", "f3"]
    with caplog.at_level(logging.WARNING):
        assert alert(v) is True
    assert "ALERT reelrank drift" in caplog.text and "f0" in caplog.text


def test_evidently_stays_quiet_on_the_same_distribution(tmp_path, frames):
    ref, same, _ = frames
    v = check_drift(ref, same, tmp_path)
    assert not v.drifted and v.drifted_columns == []


def test_a_column_empty_on_one_side_is_left_out_of_drift_but_flagged_when_it_emptied(
    tmp_path, frames
):
    ref, same, _ = frames
    never = check_drift(ref.assign(score=np.nan), same.assign(score=np.nan), tmp_path / "a")
    assert not never.drifted and not never.quality  # nothing to compare, nothing broken
    emptied = check_drift(ref.assign(score=1.0), same.assign(score=np.nan), tmp_path / "b")
    assert emptied.broken_columns == ["score"] and emptied.severity == "broken"


def test_a_unit_switch_or_nulls_are_broken_inputs_not_drift():
    from monitoring.drift import quality_issues

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"watch_time_s": rng.gamma(2.0, 10.0, 2000), "rate": rng.random(2000)})
    shifted = ref.assign(rate=ref["rate"] * 1.5)  # a real shift of tastes: not broken
    assert quality_issues(ref, shifted) == []
    minutes = ref.assign(watch_time_s=ref["watch_time_s"] / 60.0)
    (issue,) = quality_issues(ref, minutes)
    assert issue.column == "watch_time_s" and issue.check == "scale"
    assert "x0.0167" in str(issue)
    nulls = ref.assign(rate=ref["rate"].where(rng.random(2000) > 0.5))
    (issue,) = quality_issues(ref, nulls)
    assert issue.column == "rate" and issue.check == "nulls"


def test_one_retrain_per_drift_episode(tmp_path):
    from monitoring.drift import ColumnDrift, DriftVerdict, QualityIssue
    from monitoring.pipeline import broken_days, drift_episode
    from reelrank.settings import get_settings

    s = get_settings(home=tmp_path)

    def verdict(drifted: bool, broken: bool = False) -> DriftVerdict:
        col = ColumnDrift("prediction", 0.3 if drifted else 0.01, 0.1, "wasserstein", drifted)
        quality = (QualityIssue("watch_time_s", "scale", 30.0, 0.5),) if broken else ()
        return DriftVerdict(drifted, 0.5 if drifted else 0.0, 0.3, (col,), 10, 10, quality=quality)

    days = [date(2025, 7, d) for d in range(1, 8)]
    states = [False, True, True, False, True, False, False]
    retrains = [drift_episode(s, d, verdict(x)) for d, x in zip(days, states, strict=True)]
    assert retrains == [False, True, False, False, True, False, False]
    assert drift_episode(s, date(2025, 7, 8), verdict(True, broken=True)) is False
    out = s.reports_dir / "drift" / "2025-07-08"
    out.mkdir(parents=True)
    (out / "verdict.json").write_text(json.dumps(verdict(True, broken=True).to_dict()))
    assert broken_days(s, date(2025, 7, 1), date(2025, 7, 8)) == {"2025-07-08": ["watch_time_s"]}
    assert broken_days(s, date(2025, 7, 1), date(2025, 7, 7)) == {}


def test_training_learns_when_the_open_drift_episode_began(tmp_path):
    from monitoring.drift import ColumnDrift, DriftVerdict
    from monitoring.pipeline import drift_episode
    from monitoring.record import open_episode_since
    from reelrank.settings import get_settings

    s = get_settings(home=tmp_path)

    def verdict(drifted: bool) -> DriftVerdict:
        col = ColumnDrift("prediction", 0.3 if drifted else 0.01, 0.1, "wasserstein", drifted)
        return DriftVerdict(drifted, 0.5 if drifted else 0.0, 0.3, (col,), 10, 10)

    assert open_episode_since(s, date(2025, 7, 3)) is None  # no state yet
    drift_episode(s, date(2025, 7, 2), verdict(False))
    assert open_episode_since(s, date(2025, 7, 3)) is None
    drift_episode(s, date(2025, 7, 3), verdict(True))
    drift_episode(s, date(2025, 7, 4), verdict(True))
    # the retrain of the first drifted day and every one while the episode stays open
    assert open_episode_since(s, date(2025, 7, 3)) == date(2025, 7, 3)
    assert open_episode_since(s, date(2025, 7, 5)) == date(2025, 7, 3)
    assert open_episode_since(s, date(2025, 7, 2)) is None  # a replay of an earlier holdout
    drift_episode(s, date(2025, 7, 6), verdict(False))
    assert open_episode_since(s, date(2025, 7, 7)) is None  # closed: back to equal weights
