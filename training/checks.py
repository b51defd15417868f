"""Checks a challenger must pass before the gate may promote it, beyond its metrics.

- Behavioural (after Ribeiro et al.'s CheckList): invariance (scores do not depend on the order
  of the candidates, nor on a context column the model must not read), direction (more
  affinity for a video's topic raises its score), minimum functionality (a user who only
  watches one topic gets that topic on top).
- Feature contract: every Feast-served input of the model is declared by the registered
  FeatureService the version is tagged with, so serving can fetch all of it.

Each returns a list of failures (empty = passed); the gate turns failures into blockers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from feature_repo.columns import AFFINITY_COLUMNS
from features.batch import FEATURE_DEFAULTS

if TYPE_CHECKING:
    from feast import FeatureStore

Scorer = Callable[[pd.DataFrame], np.ndarray]


def behavioural_checks(score: Scorer, rows: pd.DataFrame, seed: int = 0) -> dict[str, str | None]:
    """Run the three behavioural checks on holdout ``rows``; name -> failure (None = passed).

    The two topic checks run only when the rows span at least two topics."""
    out: dict[str, str | None] = {}
    rows = rows.reset_index(drop=True)
    base = score(rows)

    # invariance: candidate order, and a context column the ranker must ignore
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = score(rows.iloc[order].reset_index(drop=True))
    moved = rows.assign(position=(rows["position"] + 7) % 50) if "position" in rows else rows
    stable = np.allclose(shuffled, base[order], atol=1e-6) and np.allclose(
        score(moved), base, atol=1e-6
    )
    out["invariance"] = None if stable else "scores change with candidate order or position"

    slots = rows["v_topic_slot"]
    if slots[slots != FEATURE_DEFAULTS["v_topic_slot"]].nunique() < 2:
        # one topic for every video (a dataset without topics): the affinity features are
        # constant, so the two topic checks below have nothing to measure and are not run
        return out

    # direction: affinity for the video's own topic up -> score up
    low, high = rows.copy(), rows.copy()
    slots = rows["v_topic_slot"].astype(int).to_numpy()
    for i, col in enumerate(AFFINITY_COLUMNS):
        mask = slots == i
        low.loc[mask, col] = 0.01
        high.loc[mask, col] = 0.6
    s_low, s_high = score(low), score(high)
    share_up = float((s_high >= s_low - 1e-6).mean())
    gain = float(s_high.mean() - s_low.mean())
    out["direction"] = (
        None
        if share_up > 0.95 and gain > 0
        else f"more topic affinity raised the score on {share_up:.0%} of rows (mean gain "
        f"{gain:+.4f}); the check needs more than 95% and a positive mean gain"
    )

    # minimum functionality: a one-topic user gets that topic on top
    videos = rows.drop_duplicates("video_id").head(60).copy()
    target = int(videos["v_topic_slot"].mode()[0])
    for col in AFFINITY_COLUMNS:
        videos[col] = 0.005
    videos[AFFINITY_COLUMNS[target]] = 0.9
    top = videos.assign(_s=score(videos)).nlargest(5, "_s")
    share = float((top["v_topic_slot"] == target).mean())
    out["minimum_functionality"] = (
        None
        if share >= 0.8
        else f"a one-topic user got {share:.0%} of that topic in the top 5; the check needs "
        "at least 80%"
    )
    return out


def feature_service_check(
    store: FeatureStore, service: str, model_features: Sequence[str]
) -> str | None:
    """None when every Feast-served model input is declared by ``service``."""
    from feature_repo.columns import VIEW_COLUMNS

    served = {c for cols in VIEW_COLUMNS.values() for c in cols}
    needed = [f for f in model_features if f in served]
    try:
        fs = store.get_feature_service(service)
    except Exception as err:  # not registered: the version cannot be served
        return f"feature service {service!r} is not registered: {err}"
    declared = {f.name for proj in fs.feature_view_projections for f in proj.features}
    missing = [f for f in needed if f not in declared]
    if missing:
        return f"feature service {service!r} lacks {len(missing)} model inputs: {missing[:5]}"
    return None
