"""Does a retrain after drift adapt? Stale vs retrained rankers on the post-drift holdout.

For each drift scenario (``topic_surge``, ``interest_shift``, ``broken_feature``) and seed, a
small version 2 world drifts on day ``S``; the ranker is then judged on a post-drift holdout
day ``H = S + lag`` by three models:

* **stale**: trained on the ``window`` days before the drift (the champion when it began);
* **retrained**: trained on the ``window`` days before ``H`` (``lag`` of them after the drift),
  every row weighing the same;
* **recent-weighted**: the same rows, weighted as the training does while a drift episode is
  open (:func:`training.recency.recency_weights`: 1 from ``S`` on, halving every
  ``half_life`` days before it).

To run in minutes, features are computed here straight from the simulated log (per-user,
per-user x topic, per-video, per-creator and per-user x creator positive rates and watch
fractions over the window's days before each row's day, the user x topic rate of the day
before, plus topic, country, surface,
position, duration and video age), not through the Feast pipeline; the ranker is one
XGBoost classifier on "completed, liked or shared" fitted by :func:`training.engine.fit`,
the engine of the real training. Metrics on ``H``: AUC and NDCG@10 within each feed request
on the logged value (completed + liked + shared), and the oracle's NDCG@10 for reference.

    python bench/drift_retrain.py [--seeds 1,2,3] [--lag 1] [--half-life 0.5]

Nothing here asserts: it prints one table (tests/model/test_drift_retrain.py asserts the
weighted retrain's edge on a tiny world).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from ingest.simulator import COUNTRIES, TOPICS, World, generate_world
from models.metrics import ndcg_at_k
from reelrank.settings import SimulationSettings
from training.engine import fit
from training.recency import recency_weights

SCENARIOS = ("topic_surge", "interest_shift", "broken_feature")
FEATURES = (
    "u_rate",
    "u_imps",
    "ut_rate",
    "ut_share",
    "ut_rate_1d",
    "v_rate",
    "v_imps",
    "c_rate",
    "uc_rate",
    "uc_imps",
    "t_rate",
    "u_watch",
    "v_watch",
    "topic",
    "country",
    "surface",
    "position",
    "log_duration",
    "video_age",
)
PRIOR = 0.3  # positive rate every smoothed rate starts from
PRIOR_WEIGHT = 3.0


@dataclass(frozen=True)
class Case:
    """One world and its days: drift on ``drift_day``, holdout ``drift_day + lag``."""

    scenario: str
    seed: int
    n_users: int = 1000
    n_videos: int = 2000
    n_creators: int = 100
    drift_day: int = 14
    lag: int = 1
    window: int = 7

    def sim(self) -> SimulationSettings:
        return SimulationSettings(
            seed=self.seed,
            n_users=self.n_users,
            n_creators=self.n_creators,
            n_videos=self.n_videos,
            days=self.drift_day + self.lag + 1,
            catalog_history_days=30,
            scenario=self.scenario,  # type: ignore[arg-type]
            scenario_day=self.drift_day,
        )


def _rate(pos: pd.Series, imps: pd.Series) -> pd.Series:
    return (pos + PRIOR * PRIOR_WEIGHT) / (imps + PRIOR_WEIGHT)


def _log(world: World, day: int) -> pd.DataFrame:
    imp = world.impressions(day)
    v = world.videos.set_index("video_id")
    imp["topic"] = v.loc[imp["video_id"], "topic"].map(TOPICS.index).to_numpy()
    imp["creator_id"] = v.loc[imp["video_id"], "creator_id"].to_numpy()
    imp["upload_ts"] = v.loc[imp["video_id"], "upload_ts"].to_numpy()
    imp["positive"] = imp["completed"] | imp["liked"] | imp["shared"]
    imp["value"] = imp[["completed", "liked", "shared"]].sum(axis=1)
    imp["watch_frac"] = imp["watch_time_s"] / imp["duration_s"]
    imp["day"] = day
    return imp


def _features(world: World, logs: dict[int, pd.DataFrame], day: int, window: int) -> pd.DataFrame:
    """Day ``day``'s impressions with features from the ``window`` days before it only."""
    past = pd.concat([logs[d] for d in range(max(0, day - window), day)], ignore_index=True)
    out = logs[day].copy()

    def join(keys: list[str], prefix: str) -> None:
        g = past.groupby(keys).agg(
            imps=("positive", "size"), pos=("positive", "sum"), watch=("watch_frac", "mean")
        )
        g[f"{prefix}_rate"] = _rate(g["pos"], g["imps"])
        g[f"{prefix}_imps"] = np.log1p(g["imps"])
        g[f"{prefix}_watch"] = g["watch"]
        cols = [f"{prefix}_rate", f"{prefix}_imps", f"{prefix}_watch"]
        merged = out[keys].merge(g[cols], left_on=keys, right_index=True, how="left")
        for c in cols:
            out[c] = merged[c].to_numpy()

    join(["user_id"], "u")
    join(["user_id", "topic"], "ut")
    join(["video_id"], "v")
    join(["creator_id"], "c")
    join(["user_id", "creator_id"], "uc")
    join(["topic"], "t")
    user_imps = past.groupby("user_id").size()
    ut_imps = past.groupby(["user_id", "topic"]).size()
    share = ut_imps / user_imps.reindex(ut_imps.index.get_level_values(0)).to_numpy()
    out["ut_share"] = (
        out[["user_id", "topic"]]
        .merge(share.rename("s"), left_on=["user_id", "topic"], right_index=True, how="left")["s"]
        .fillna(0.0)
        .to_numpy()
    )
    last = logs[day - 1].groupby(["user_id", "topic"])["positive"].agg(["size", "sum"])
    rate_1d = _rate(last["sum"], last["size"]).rename("r")
    out["ut_rate_1d"] = (
        out[["user_id", "topic"]]
        .merge(rate_1d, left_on=["user_id", "topic"], right_index=True, how="left")["r"]
        .to_numpy()
    )
    for c in ("u_rate", "ut_rate", "ut_rate_1d", "v_rate", "c_rate", "uc_rate", "t_rate"):
        out[c] = out[c].fillna(PRIOR)
    for c in ("u_imps", "v_imps", "uc_imps"):
        out[c] = out[c].fillna(0.0)
    country = world.users.set_index("user_id")["country"]
    out["country"] = country.loc[out["user_id"]].map(COUNTRIES.index).to_numpy()
    out["surface"] = out["surface"].map({"spotlight": 0, "discover": 1, "stories": 2})
    out["log_duration"] = np.log(out["duration_s"])
    out["video_age"] = (out["ts"] - out["upload_ts"]).dt.total_seconds() / 86400.0
    return out


def case_frames(case: Case) -> tuple[World, dict[int, pd.DataFrame]]:
    """The world and the featurized log of every day a model of ``case`` trains or is
    judged on."""
    world = generate_world(case.sim())
    holdout = case.drift_day + case.lag
    first = case.drift_day - 2 * case.window
    logs = {d: _log(world, d) for d in range(max(0, first), holdout + 1)}
    days = range(case.drift_day - case.window, holdout + 1)
    return world, {d: _features(world, logs, d, case.window) for d in days}


def fit_ranker(rows: pd.DataFrame, weights: np.ndarray | None, seed: int) -> xgb.XGBClassifier:
    params = {
        "n_estimators": 60,
        "max_depth": 5,
        "learning_rate": 0.15,
        "max_bin": 64,
        "min_child_weight": 5.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "tree_method": "hist",
        "n_jobs": 2,
        "random_state": seed,
    }
    x = rows[list(FEATURES)].astype(np.float32)
    model, _ = fit(
        xgb.XGBClassifier, params, x, rows["positive"].to_numpy(int), sample_weight=weights
    )
    assert isinstance(model, xgb.XGBClassifier)
    return model


def judge(model: xgb.XGBClassifier, hold: pd.DataFrame) -> dict[str, float]:
    scores = model.predict_proba(hold[list(FEATURES)].astype(np.float32))[:, 1]
    return {
        "auc": float(roc_auc_score(hold["positive"], scores)),
        "ndcg": ndcg_at_k(hold["request_id"].to_numpy(), hold["value"].to_numpy(), scores, 10),
    }


def run_case(case: Case, half_life: float) -> dict[str, dict[str, float]]:
    """Stale, retrained and recent-weighted rankers on the post-drift holdout of ``case``."""
    world, frames = case_frames(case)
    holdout, s, w = case.drift_day + case.lag, case.drift_day, case.window
    hold = frames[holdout]
    stale_rows = pd.concat([frames[d] for d in range(s - w, s)], ignore_index=True)
    recent_rows = pd.concat([frames[d] for d in range(holdout - w, holdout)], ignore_index=True)
    weights = recency_weights(recent_rows["ts"], world.day(s), half_life)
    out = {
        "stale": judge(fit_ranker(stale_rows, None, case.seed), hold),
        "retrained": judge(fit_ranker(recent_rows, None, case.seed), hold),
        "recent-weighted": judge(fit_ranker(recent_rows, weights, case.seed), hold),
    }
    oracle = world.oracle_utility(hold["user_id"], hold["video_id"], world.day(holdout))
    out["oracle"] = {
        "auc": float(roc_auc_score(hold["positive"], oracle)),
        "ndcg": ndcg_at_k(hold["request_id"].to_numpy(), hold["value"].to_numpy(), oracle, 10),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--lag", type=int, default=1, help="post-drift days before the holdout")
    parser.add_argument("--half-life", type=float, default=0.5)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    models = ("stale", "retrained", "recent-weighted", "oracle")
    print(
        f"post-drift holdout = drift day + {args.lag}; window 7 days; half-life "
        f"{args.half_life:g} days; {args.users} users; AUC / NDCG@10 on the logged value"
    )
    print(f"{'scenario':<15} {'seed':>4}  " + "  ".join(f"{m:>17}" for m in models))
    totals: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for scenario in args.scenarios.split(","):
        for seed in (int(x) for x in args.seeds.split(",")):
            case = Case(scenario, seed, n_users=args.users, lag=args.lag)
            res = run_case(case, args.half_life)
            for m in models:
                for k, v in res[m].items():
                    totals.setdefault(scenario, {}).setdefault(f"{m}/{k}", []).append(v)
            cells = "  ".join(f"{res[m]['auc']:.4f} / {res[m]['ndcg']:.4f}" for m in models)
            print(f"{scenario:<15} {seed:>4}  {cells}", flush=True)
        mean = totals[scenario]
        cells = "  ".join(
            f"{np.mean(mean[f'{m}/auc']):.4f} / {np.mean(mean[f'{m}/ndcg']):.4f}" for m in models
        )
        print(f"{scenario:<15} {'mean':>4}  {cells}", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
