"""The experiment report: per-arm per-day figures checked by hand, the cumulative analysis
and its decision on synthetic logs with a known effect, and the HTML a person reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.report import build_report, daily_table, render_html
from experiments.stats import Decision

pytestmark = pytest.mark.unit
DAY0 = pd.Timestamp("2025-07-01", tz="UTC")


def _rows(spec: list[tuple[str, str, int, str, str, bool, bool]]) -> pd.DataFrame:
    """Rows from (user, arm, day, request, video, value, skipped)."""
    return pd.DataFrame(
        {
            "user_id": [s[0] for s in spec],
            "arm": [s[1] for s in spec],
            "ts": [DAY0 + pd.Timedelta(days=s[2], hours=12) for s in spec],
            "request_id": [s[3] for s in spec],
            "video_id": [s[4] for s in spec],
            "completed": [s[5] for s in spec],
            "liked": False,
            "shared": False,
            "skipped": [s[6] for s in spec],
        }
    )


def test_the_daily_table_counts_by_hand() -> None:
    rows = _rows(
        [
            # day 0, champion: u1 two requests (3 values of 4 shown, 1 skip), u2 one (0 of 2)
            ("u1", "champion", 0, "r1", "old", True, False),
            ("u1", "champion", 0, "r1", "new", True, False),
            ("u1", "champion", 0, "r2", "old", True, False),
            ("u1", "champion", 0, "r2", "old", False, True),
            ("u2", "champion", 0, "r3", "old", False, True),
            ("u2", "champion", 0, "r3", "new", False, False),
            # day 0, challenger: u3 one request (2 of 2)
            ("u3", "challenger", 0, "r4", "new", True, False),
            ("u3", "challenger", 0, "r4", "new", True, False),
            # day 1, champion: u1 one request (0 of 1, skipped)
            ("u1", "champion", 1, "r5", "old", False, True),
        ]
    )
    videos = pd.DataFrame(
        {
            "video_id": ["old", "new"],
            "upload_ts": [DAY0 - pd.Timedelta(days=10), DAY0 + pd.Timedelta(hours=1)],
        }
    )
    t = daily_table(rows, videos=videos, fresh_hours=24).set_index(["day", "arm"])
    d0, d1 = DAY0.date(), (DAY0 + pd.Timedelta(days=1)).date()
    champ = t.loc[(d0, "champion")]
    assert (champ["users"], champ["requests"], champ["impressions"]) == (2, 3, 6)
    assert champ["value_per_request"] == pytest.approx(3 / 3)
    assert champ["skip_rate"] == pytest.approx(2 / 6)
    assert champ["fresh_share"] == pytest.approx(2 / 6)  # "new" is 11 h old at noon
    chal = t.loc[(d0, "challenger")]
    assert (chal["users"], chal["requests"], chal["value_per_request"]) == (1, 1, 2.0)
    assert chal["fresh_share"] == 1.0 and chal["skip_rate"] == 0.0
    late = t.loc[(d1, "champion")]
    assert (late["users"], late["value_per_request"], late["skip_rate"]) == (1, 0.0, 1.0)
    # "new" is 35 h old on day 1's noon: not fresh any more (no fresh impression that day)
    assert late["fresh_share"] == 0.0
    # without the videos the fresh share cannot be derived: absent, not zero
    assert "fresh_share" not in daily_table(rows).columns


def _synthetic(
    n_users: int,
    days: int,
    share: float,
    p_value: tuple[float, float],
    p_skip: tuple[float, float] = (0.3, 0.3),
    seed: int = 0,
) -> pd.DataFrame:
    """Users split by ``share`` (user i is challenger when i/n < share); each user makes two
    requests of four impressions a day; an impression has value with probability
    ``p_value[arm]`` and is skipped with ``p_skip[arm]`` (arm 0 champion, 1 challenger)."""
    rng = np.random.default_rng(seed)
    users = np.arange(n_users)
    chal = (rng.permutation(n_users) / n_users) < share
    frames = []
    for d in range(days):
        u = np.repeat(users, 8)
        req = np.repeat(np.arange(n_users * 2), 4)
        arm = chal[u].astype(int)
        pv, ps = np.array(p_value)[arm], np.array(p_skip)[arm]
        value = rng.random(len(u)) < pv
        frames.append(
            pd.DataFrame(
                {
                    "user_id": [f"u{i}" for i in u],
                    "arm": np.where(arm == 1, "challenger", "champion"),
                    "ts": DAY0 + pd.Timedelta(days=d, hours=9),
                    "request_id": [f"d{d}-r{r}" for r in req],
                    "video_id": "v",
                    "completed": value,
                    "liked": False,
                    "shared": False,
                    "skipped": ~value & (rng.random(len(u)) < ps / (1 - pv)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_a_known_lift_ships_and_the_cumulative_analysis_narrows_day_by_day() -> None:
    # the truth: value per request 4 * 0.30 = 1.2 for the champion, 4 * 0.36 = 1.44 challenger
    rows = _synthetic(1500, 3, 0.3, (0.30, 0.36))
    r = build_report(rows, share=0.3, horizon_days=14)
    assert r.decision is Decision.SHIP, r.final.to_dict()
    final = r.final
    assert final.primary.low < 0.24 < final.primary.high
    assert final.primary_always_valid.low > 0
    # the always-valid interval is wider than the fixed-horizon one (the price of peeking)
    assert final.primary_always_valid.low < final.primary.low
    days = [c.day for c in r.cumulative]
    assert days == sorted(days) and len(days) == 3
    widths = [c.analysis.primary.high - c.analysis.primary.low for c in r.cumulative]
    assert widths[0] > widths[1] > widths[2]
    assert not final.srm.mismatch
    assert r.mde is not None and 0 < r.mde < 0.24  # the effect is above what 1500 users detect


def test_no_effect_keeps_running_before_the_horizon_and_says_so_after() -> None:
    rows = _synthetic(400, 2, 0.5, (0.3, 0.3), seed=1)
    early = build_report(rows, share=0.5, horizon_days=14)
    assert early.decision is Decision.KEEP_RUNNING
    assert "2 of 14 days" in early.verdict.reasons[0]
    done = build_report(rows, share=0.5, horizon_days=2)
    assert done.decision is Decision.NO_EFFECT


def test_more_skips_stop_for_harm_and_a_broken_split_is_invalid() -> None:
    harm = build_report(_synthetic(1500, 2, 0.5, (0.3, 0.3), p_skip=(0.3, 0.45), seed=2), share=0.5)
    assert harm.decision is Decision.STOP_FOR_HARM
    assert "skip rate" in harm.verdict.reasons[0]
    # 30% of users in the challenger arm analysed as a 50% experiment
    broken = build_report(_synthetic(1500, 2, 0.3, (0.3, 0.3), seed=3), share=0.5)
    assert broken.decision is Decision.INVALID


def test_the_html_shows_the_decision_the_plots_and_the_truth_beside_the_estimate() -> None:
    rows = _synthetic(600, 2, 0.5, (0.30, 0.36), seed=4)
    truth = pd.DataFrame(
        {
            "day": [DAY0.date()] * 2 + [(DAY0 + pd.Timedelta(days=1)).date()] * 2,
            "arm": ["champion", "challenger"] * 2,
            "users": [300, 300, 300, 300],
            "requests": [600, 600, 600, 600],
            "impressions": [2400] * 4,
            "mean_utility": [0.1, 0.3, 0.1, 0.3],
            "expected_completion": [0.30, 0.36, 0.30, 0.36],
            "completion_rate": [0.30, 0.36, 0.30, 0.36],
            "value_per_request": [1.2, 1.44, 1.2, 1.44],
        }
    )
    r = build_report(rows, share=0.5, truth=truth)
    html = render_html(r, title="exp-1", meta={"salt": "exp-1", "challenger": "v2"})
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert r.decision.value in html and r.verdict.reasons[0] in html
    assert "sample ratio" in html.lower() and "CUPED" in html and "MDE" in html
    assert html.count("plotly-graph-div") >= 3  # value, skip rate, cumulative difference
    assert "Oracle truth" in html and "mean_utility" in html
    # the truth's difference of value per request stands beside the estimate
    assert r.truth_diff is not None
    assert r.truth_diff["value_per_request"] == pytest.approx(0.24)
    assert "0.2400" in html
