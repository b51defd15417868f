"""An experiment's analysis on a simulated impression log: A/A at the nominal rate, a real
lift found, a broken split refused."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import (
    CONTROL,
    TREATMENT,
    aa_false_positive_rate,
    analyse,
    user_table,
)
from experiments.stats import Decision
from ingest.lake import read_table
from ingest.pipeline import ingest_simulated
from serving.experiments import user_bucket
from tests.conftest import tiny_settings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the experiment's days, the days before): a tiny simulated world's impressions."""
    s = tiny_settings(tmp_path_factory.mktemp("ab") / "var")
    ingest_simulated(s, s.sim.end_date)
    imp = read_table(s.lake_dir, "impressions")
    start = s.sim.end_date - timedelta(days=3)
    day = imp["ts"].dt.date
    return imp[day >= start].reset_index(drop=True), imp[day < start].reset_index(drop=True)


def _arm(salt: str, share: float = 0.5):
    return lambda u: TREATMENT if user_bucket(u, salt) < share else CONTROL


def test_aa_false_positives_stay_at_the_nominal_rate(log):
    during, before = log
    rate, runs = aa_false_positive_rate(
        during, (f"aa-{i}" for i in range(120)), 0.5, user_bucket, pre=before
    )
    assert runs == 120
    assert rate <= 0.10, rate  # nominal 0.05; 120 runs: two standard errors above is 0.09


def test_a_real_lift_is_found_and_cuped_narrows_it(log):
    during, before = log
    arm = _arm("lift")
    treated = during["user_id"].map(lambda u: arm(u) == TREATMENT).to_numpy()
    rng = np.random.default_rng(0)
    lifted = during.copy()
    # the truth: treatment turns 15% of its non-engaged impressions into completions
    flip = treated & ~during["completed"].to_numpy() & (rng.random(len(during)) < 0.15)
    lifted.loc[flip, "completed"] = True
    with_cuped = analyse(user_table(lifted, arm, before), 0.5)
    without = analyse(user_table(lifted, arm, before), 0.5, use_cuped=False)
    assert with_cuped.verdict.decision is Decision.SHIP, with_cuped.to_dict()
    assert with_cuped.primary.low > 0
    assert with_cuped.primary.se < without.primary.se  # the pre-period explains variance
    vpr = with_cuped.value_per_request
    assert vpr[TREATMENT] > vpr[CONTROL]


def test_a_broken_split_is_invalid_whatever_the_metrics(log):
    during, before = log
    arm = _arm("srm")
    users = user_table(during, arm, before)
    treated = users[users["arm"] == TREATMENT]
    broken = users.drop(treated.index[: len(treated) // 3])  # a third of treatment lost
    a = analyse(broken, 0.5)
    assert a.srm.mismatch and a.verdict.decision is Decision.INVALID
    assert "sample ratio mismatch" in a.verdict.reasons[0]


def test_a_metric_without_variance_is_analysed_not_an_error(log):
    """A near-perfect feed can leave a guardrail with no variance at all (no skips in either
    arm): the analysis still decides, with a zero-width interval for that guardrail."""
    during, _ = log
    calm = during.assign(skipped=False)
    a = analyse(user_table(calm, _arm("calm")), 0.5)
    assert a.skip_rate_diff.se == 0.0
    assert a.verdict.decision in (Decision.KEEP_RUNNING, Decision.NO_EFFECT, Decision.SHIP)
