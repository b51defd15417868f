"""Experiments checked against the simulator's truth: A/A, CUPED, exploration, off-policy.

Run from the repository root::

    python bench/experiments.py [--users 1500] [--videos 3000] [--days 2] [--seeds 2]
        [--logging 0.05:10 0.3:50] [--target 0.05:10] [--pool 50] [--draws 2000]
        [--champion-noise 1.0] [--better-noise 0.5] [--older-noise 2.0]
        [--reward completed|value] [--salts 200]

For each seed and each experiment day, a fresh simulated world (``ingest.simulator``) is
served for that day in a closed loop (``experiments.closed_loop.serve_day``) by a
*champion*: a model whose scores are the oracle's hidden utility plus Gaussian noise
(``--champion-noise`` times the user's spread of utility), whose candidate pool is its top
``--pool`` videos and whose feed is drawn from its ranked list by a serving exploration
policy (``serving.exploration``), each slot's propensity logged. One champion day is served
per ``--logging`` policy (``eps:M`` epsilon-greedy over the top M, ``pl:T:M``
Plackett-Luce, ``greedy``): the serving default, and a wider one. Challengers re-rank the
same pool:

- ``better``: utility plus less noise (``--better-noise``);
- ``older``: utility plus more noise (``--older-noise``);
- ``popularity``: the videos' hidden quality alone, the same order for every user;
- ``reversed``: the first part of the champion's list (what its feed can reach) upside
  down (deliberately worse);
- ``champion``: the champion itself, a check of the machinery.

Each target's value (mean reward per shown slot; the reward is ``--reward``: completed, or
value = completed | liked | shared) is estimated from the champion's day by IPS, SNIPS and
DR with the three weightings of ``experiments.offpolicy`` (marginal: the item-position
estimator, its marginal probabilities from ``--draws`` slates per user and policy;
conditional: the per-slot ratio of the logged conditional probabilities; prefix: their
running product). DR's reward model is a logistic regression of the reward on the
champion's score and the slot, fitted on the champion's log. The *true* value comes from
serving the same day, on a fresh world that faces the same requests, with the target itself
through ``--target``'s exploration: the oracle's expected completion per impression
(``--reward completed``) or the realised value per slot. Per logging policy, target,
weighting and estimator the table gives the mean estimate, the truth, the bias and its
standard error over days, the lift over the champion (estimated from the same log, and
true), the share of days whose 95% interval covers the truth, its mean half-width, the
mean effective sample size and the mean weight (near 1 where the log covers the target).

Then, on the champion's days served with the first logging policy: the A/A false-positive
rate of the A/B analysis (``experiments.analysis.aa_false_positive_rate``, ``--salts``
splits a day) and CUPED's variance reduction (the logging policy's days before the
experiment day as the pre-period); and the cost of exploration: the champion's true value
served greedily and with each logging policy.

Nothing here asserts: it prints figures for a person to judge.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.analysis import aa_false_positive_rate, analyse, user_table
from experiments.closed_loop import Feed, ServedDay, serve_day
from experiments.offpolicy import WEIGHTINGS, slate_estimates, slate_log, slot_marginals
from experiments.ope import OpeEstimate
from ingest.simulator import World, generate_world
from reelrank.settings import SimulationSettings
from serving.experiments import user_bucket
from serving.exploration import (
    GREEDY,
    ExplorationPolicy,
    draw_slate,
    request_rng,
    slate_propensities,
)

ESTIMATORS = ("ips", "snips", "dr")
MODELS = ("champion", "better", "older", "popularity", "reversed")


def live_videos(world: World, day_idx: int) -> np.ndarray:
    """The videos the simulator's catalog holds at the start of the day."""
    start = pd.Timestamp(world.day(day_idx), tz="UTC")
    up = world.videos["upload_ts"]
    keep = (up < start) & (up >= start - pd.Timedelta(days=world.sim.catalog_history_days))
    return world.videos["video_id"].to_numpy()[keep.to_numpy()]


@dataclass(frozen=True)
class Rankings:
    """Every model's ranked pool per user on one day (video ids, best first), and the
    champion's score of each pool video (the feature of DR's reward model)."""

    lists: dict[str, dict[str, np.ndarray]]  # model -> user -> ranked pool
    champion_score: dict[str, dict[str, float]]  # user -> video -> score


def rank_day(
    world: World,
    day_idx: int,
    pool: int,
    noise: dict[str, float],
    seed: int,
    span: int,
) -> Rankings:
    """The champion's pool per user (its top ``pool`` by utility plus noise) and every
    model's order of it. ``noise``: the noise of ``champion``, ``better`` and ``older`` (x
    the user's std of utility); ``popularity`` and ``reversed`` need none. ``reversed``
    turns the first ``span`` of the champion's list (what its feed can reach) upside down."""
    live = live_videos(world, day_idx)
    users = world.users["user_id"].to_numpy()
    quality = world.video_quality[np.fromiter((world.video_index[v] for v in live), np.int64)]
    rng = np.random.default_rng([seed, 17, day_idx])
    lists: dict[str, dict[str, np.ndarray]] = {m: {} for m in MODELS}
    scores: dict[str, dict[str, float]] = {}
    day = world.day(day_idx)
    for user in users:
        util = world.oracle_utility(np.repeat(user, len(live)), live, day)
        spread = util.std()
        noisy = {m: util + s * spread * rng.standard_normal(len(live)) for m, s in noise.items()}
        top = np.argsort(-noisy["champion"], kind="stable")[:pool]
        lists["champion"][user] = live[top]
        scores[user] = dict(zip(live[top].tolist(), noisy["champion"][top].tolist(), strict=True))
        for m in ("better", "older"):
            lists[m][user] = live[top[np.argsort(-noisy[m][top], kind="stable")]]
        lists["popularity"][user] = live[top[np.argsort(-quality[top], kind="stable")]]
        span = min(span, pool)
        lists["reversed"][user] = live[np.r_[top[:span][::-1], top[span:]]]
    return Rankings(lists, scores)


class ListPolicy:
    """A feed policy serving each user's ranked list through an exploration policy, with
    the request-seeded draw serving uses (so a request is replayed exactly)."""

    def __init__(self, lists: dict[str, np.ndarray], explore: ExplorationPolicy, name: str) -> None:
        self.lists, self.explore, self.name = lists, explore, name

    def ranked(self, user_id: str, k: int) -> np.ndarray:
        """The part of the user's list the policy can serve (serving's span)."""
        return self.lists[user_id][: self.explore.span(k)]

    def __call__(self, user_id: str, k: int, surface: str, request_id: str) -> Feed:
        ranked = self.ranked(user_id, k)
        slate = draw_slate(self.explore, len(ranked), k, request_rng(request_id))
        return Feed(list(ranked[slate.places]), self.name, self.name, list(slate.propensities))


def target_probabilities(
    explore: ExplorationPolicy,
    ranked: np.ndarray,
    slate: Sequence[str],
    q: Callable[[np.ndarray, int], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Per slot of a logged ``slate``: the challenger's probability of the logged item given
    the logged earlier slots (``slate_propensities``), and the reward model's expectation
    ``v`` under that same conditional: ``sum over the window of P(a) q(a, slot)``."""
    pi = slate_propensities(explore, list(ranked), list(slate))
    v = np.zeros(len(slate))
    shown: set[str] = set()
    for j, item in enumerate(slate):
        remaining = [x for x in ranked if x not in shown]
        window = np.asarray(remaining[: explore.top_m])
        if len(window):
            places = np.flatnonzero(np.isin(ranked, window))
            v[j] = float(explore.window_probabilities(places) @ q(window, j))
        shown.add(item)
    return pi, v


def fit_reward_model(
    log: pd.DataFrame, reward: np.ndarray, scores: dict[str, dict[str, float]]
) -> LogisticRegression:
    """P(reward) from the champion's score and the slot, fitted on the champion's log."""
    x = _features(log["user_id"].to_numpy(), log["video_id"].to_numpy(), log["position"], scores)
    return LogisticRegression(C=10.0, max_iter=500).fit(x, reward.astype(int))


def _features(
    users: np.ndarray,
    videos: np.ndarray,
    slots: pd.Series | np.ndarray,
    scores: dict[str, dict[str, float]],
) -> np.ndarray:
    s = np.fromiter((scores[u][v] for u, v in zip(users, videos, strict=True)), np.float64)
    return np.column_stack([s, np.asarray(slots, dtype=np.float64)])


def rewards(rows: pd.DataFrame, kind: str) -> np.ndarray:
    """Per row: ``completed``, or ``value`` (completed, liked or shared)."""
    if kind == "completed":
        return rows["completed"].to_numpy(np.float64)
    return (rows["completed"] | rows["liked"] | rows["shared"]).to_numpy(np.float64)


def true_value(day: ServedDay, kind: str, k: int) -> float:
    """A served day's value per slot: the oracle's expected completion, or the realised
    value per slot."""
    truth = day.truth.iloc[0]
    if kind == "completed":
        return float(truth["expected_completion"])
    return float(truth["value_per_request"] / k)


@dataclass
class Run:
    """One target policy estimated from one champion-served day."""

    logging: str
    target: str
    weighting: str
    estimator: str
    value: float
    low: float
    high: float
    ess: float
    mean_weight: float
    truth: float
    champion_truth: float
    champion_estimate: float


@dataclass
class DayResult:
    """A day's estimates, its truths, and the champion's served logs per logging policy."""

    runs: list[Run]
    truths: dict[str, float]  # target model -> true value; champion under each logging too
    logs: dict[str, ServedDay]  # logging policy's label -> the champion's served day


def label(explore: ExplorationPolicy) -> str:
    """A short name of an exploration policy."""
    if explore.deterministic:
        return "greedy"
    if explore.kind == "epsilon_greedy":
        return f"eps={explore.epsilon:g},M={explore.top_m}"
    return f"PL T={explore.temperature:g},M={explore.top_m}"


def sample_places(
    policy: ExplorationPolicy, n_ranked: int, k: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``draws`` slates of ``policy`` from a ranked list of ``n_ranked`` items at once, as
    places (draws x slots): the same distribution as ``draw_slate``, vectorised over draws
    (epsilon-greedy: the first remaining item, or with probability ``epsilon`` one of the
    window uniformly; Plackett-Luce by Gumbel-max over the window's place weights)."""
    n = min(n_ranked, policy.span(k))
    k = min(k, n)
    if policy.deterministic:
        return np.tile(np.arange(k), (draws, 1))
    avail = np.ones((draws, n), dtype=bool)
    out = np.empty((draws, k), dtype=np.int64)
    rows = np.arange(draws)
    for j in range(k):
        window = avail & (np.cumsum(avail, axis=1) <= policy.top_m)
        if policy.kind == "epsilon_greedy":
            size = window.sum(axis=1)
            explore = rng.random(draws) < policy.epsilon
            rank = np.where(explore, np.floor(rng.random(draws) * size), 0).astype(np.int64)
            pick = np.argmax(window & (np.cumsum(window, axis=1) == rank[:, None] + 1), axis=1)
        else:
            key = -np.arange(n) / policy.temperature + rng.gumbel(size=(draws, n))
            pick = np.argmax(np.where(window, key, -np.inf), axis=1)
        out[:, j] = pick
        avail[rows, pick] = False
    return out


@dataclass
class Probabilities:
    """Per logged row: the logging and the target probability of the logged item in its
    slot, conditional on the logged earlier slots and marginal, and the reward model's
    expectation under the target's conditional and marginal distribution of the slot."""

    p_conditional: np.ndarray
    pi_conditional: np.ndarray
    v_conditional: np.ndarray
    p_marginal: np.ndarray
    pi_marginal: np.ndarray
    v_marginal: np.ndarray


def estimate_targets(
    log: pd.DataFrame,
    reward: np.ndarray,
    ranks: Rankings,
    logging: ListPolicy,
    targets: dict[str, ListPolicy],
    k: int,
    draws: int,
    seed: int,
) -> dict[str, dict[str, dict[str, OpeEstimate | None]]]:
    """Every target policy's IPS, SNIPS and DR per weighting from one logged day. DR's
    reward model is fitted on the same log; marginal probabilities come from ``draws``
    slates per user and policy (a logged item the logging policy's sample never put in its
    slot gets ``1 / draws``, not 0). None where no logged row has a positive weight."""
    model = fit_reward_model(log, reward, ranks.champion_score)
    b0 = float(model.intercept_[0])
    b_score, b_slot = (float(c) for c in model.coef_[0])
    users, videos = log["user_id"].to_numpy(), log["video_id"].to_numpy()
    slots = log["position"].to_numpy()
    x = _features(users, videos, slots, ranks.champion_score)
    q_logged = 1.0 / (1.0 + np.exp(-(b0 + x @ np.array([b_score, b_slot]))))
    request = log["request_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(log)], strict=True))
    rng = np.random.default_rng([seed, 29])
    log_marginal: dict[str, tuple[dict[str, int], np.ndarray]] = {}
    for user in np.unique(users):
        ranked = logging.ranked(str(user), k)
        m = slot_marginals(sample_places(logging.explore, len(ranked), k, draws, rng), len(ranked))
        log_marginal[str(user)] = ({v: i for i, v in enumerate(ranked.tolist())}, m)
    p_marginal = np.empty(len(log))
    for row, (user, video, slot) in enumerate(zip(users, videos, slots, strict=True)):
        place, m = log_marginal[str(user)]
        p_marginal[row] = max(m[place[video], slot], 1.0 / draws)  # a draw the sample missed

    out: dict[str, dict[str, dict[str, OpeEstimate | None]]] = {}
    for name, policy in targets.items():
        pr = Probabilities(
            log["propensity"].to_numpy(np.float64),
            np.zeros(len(log)),
            np.zeros(len(log)),
            p_marginal,
            np.zeros(len(log)),
            np.zeros(len(log)),
        )
        marginals: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
        for lo, hi in bounds:
            user = str(users[lo])
            score = ranks.champion_score[user]

            def q(items: np.ndarray, slot: int, score: dict[str, float] = score) -> np.ndarray:
                s = np.fromiter((score[i] for i in items), np.float64, len(items))
                return 1.0 / (1.0 + np.exp(-(b0 + b_score * s + b_slot * slot)))

            ranked = policy.ranked(user, k)
            pr.pi_conditional[lo:hi], pr.v_conditional[lo:hi] = target_probabilities(
                policy.explore, ranked, videos[lo:hi].tolist(), q
            )
            if user not in marginals:  # one ranked list per user and day
                marg = slot_marginals(
                    sample_places(policy.explore, len(ranked), k, draws, rng), len(ranked)
                )
                q_all = np.column_stack([q(ranked, j) for j in range(marg.shape[1])])
                place = {v: i for i, v in enumerate(ranked.tolist())}
                marginals[user] = (place, marg, (marg * q_all).sum(axis=0))
            place, marg, v_slot = marginals[user]
            for row in range(lo, hi):
                at = place.get(videos[row])
                pr.pi_marginal[row] = marg[at, slots[row]] if at is not None else 0.0
                pr.v_marginal[row] = v_slot[slots[row]]
        out[name] = {}
        for weighting in WEIGHTINGS:
            if weighting == "marginal":
                p, pi, v = pr.p_marginal, pr.pi_marginal, pr.v_marginal
            else:
                p, pi, v = pr.p_conditional, pr.pi_conditional, pr.v_conditional
            slate = slate_log(request, reward, p, pi, users)
            try:
                found: dict[str, OpeEstimate | None] = dict(
                    slate_estimates(slate, weighting, q=q_logged, v=v)
                )
            except ValueError:  # no logged row has a positive weight: no estimate at all
                found = dict.fromkeys(ESTIMATORS)
            out[name][weighting] = found
    return out


def evaluate_day(
    sim: SimulationSettings,
    day_idx: int,
    loggings: Sequence[ExplorationPolicy],
    target: ExplorationPolicy,
    pool: int,
    noise: dict[str, float],
    reward_kind: str,
    seed: int,
    draws: int = 2000,
) -> DayResult:
    """Serve the day with the champion under each logging policy and estimate every target
    (the champion and the challengers, each through ``target``'s exploration) from it; serve
    it with each target, and the greedy champion, on fresh worlds for the truth."""
    k = sim.impressions_per_request
    world = generate_world(sim)
    ranks = rank_day(world, day_idx, pool, noise, seed, target.span(k))
    targets = {m: ListPolicy(ranks.lists[m], target, m) for m in MODELS}
    truths = {
        m: true_value(serve_day(generate_world(sim), day_idx, p), reward_kind, k)
        for m, p in targets.items()
    }
    greedy = ListPolicy(ranks.lists["champion"], GREEDY, "champion")
    truths["champion greedy"] = true_value(
        serve_day(generate_world(sim), day_idx, greedy), reward_kind, k
    )
    runs: list[Run] = []
    logs: dict[str, ServedDay] = {}
    for logging in loggings:
        name = label(logging)
        logged = serve_day(
            generate_world(sim), day_idx, ListPolicy(ranks.lists["champion"], logging, "champion")
        )
        logs[name] = logged
        truths[f"champion {name}"] = true_value(logged, reward_kind, k)
        log = logged.impressions
        champion = ListPolicy(ranks.lists["champion"], logging, "champion")
        found = estimate_targets(
            log, rewards(log, reward_kind), ranks, champion, targets, k, draws, seed
        )
        for m, by_weighting in found.items():
            for weighting, estimates in by_weighting.items():
                for est, e in estimates.items():
                    base = found["champion"][weighting][est]
                    runs.append(
                        Run(
                            name,
                            m,
                            weighting,
                            est,
                            e.value if e else np.nan,
                            e.low if e else np.nan,
                            e.high if e else np.nan,
                            e.ess if e else 0.0,
                            e.mean_weight if e else 0.0,
                            truths[m],
                            truths["champion"],
                            base.value if base else np.nan,
                        )
                    )
    return DayResult(runs, truths, logs)


def summarise(runs: list[Run]) -> pd.DataFrame:
    """Per logging policy, target, weighting and estimator: mean estimate, truth, bias (and
    its standard error over runs), estimated and true lift over the champion, coverage of
    the 95% interval, its mean half-width, the mean ESS and mean weight."""
    df = pd.DataFrame([r.__dict__ for r in runs])
    df["error"] = df["value"] - df["truth"]
    df["covered"] = (df["low"] <= df["truth"]) & (df["truth"] <= df["high"])
    df["lift_est"] = df["value"] - df["champion_estimate"]
    df["lift_true"] = df["truth"] - df["champion_truth"]
    df["half_width"] = (df["high"] - df["low"]) / 2
    g = df.groupby(["logging", "target", "weighting", "estimator"], sort=False)
    out = g.agg(
        estimate=("value", "mean"),
        truth=("truth", "mean"),
        bias=("error", "mean"),
        lift_est=("lift_est", "mean"),
        lift_true=("lift_true", "mean"),
        coverage=("covered", "mean"),
        half_width=("half_width", "mean"),
        ess=("ess", "mean"),
        mean_w=("mean_weight", "mean"),
        runs=("value", "count"),
    )
    out.insert(3, "bias_se", g["error"].std(ddof=1) / np.sqrt(g["error"].count()))
    return out


def ab_checks(
    log: pd.DataFrame, pre: pd.DataFrame, salts: Sequence[str]
) -> tuple[tuple[float, int], float]:
    """The A/A false-positive rate over ``salts`` and CUPED's variance ratio (the primary
    interval's variance with CUPED over without) on one split of ``log``."""
    aa = aa_false_positive_rate(log, salts, 0.5, user_bucket, pre=pre)
    users = user_table(log, lambda _: "control", pre)
    users["arm"] = [
        "treatment" if user_bucket(str(u), "cuped") < 0.5 else "control" for u in users.index
    ]
    with_cuped = analyse(users, 0.5, use_cuped=True).primary.se
    without = analyse(users, 0.5, use_cuped=False).primary.se
    return aa, (with_cuped / without) ** 2


def parse_policy(text: str) -> ExplorationPolicy:
    """``eps:M`` (epsilon-greedy), ``pl:T:M`` (Plackett-Luce) or ``greedy``."""
    parts = text.split(":")
    if parts == ["greedy"]:
        return GREEDY
    if parts[0] == "pl" and len(parts) == 3:
        return ExplorationPolicy("plackett_luce", temperature=float(parts[1]), top_m=int(parts[2]))
    if len(parts) == 2:
        return ExplorationPolicy(epsilon=float(parts[0]), top_m=int(parts[1]))
    raise argparse.ArgumentTypeError(f"not a policy: {text!r} (eps:M, pl:T:M or greedy)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--videos", type=int, default=3000)
    p.add_argument("--days", type=int, default=2, help="experiment days per seed")
    p.add_argument("--seeds", type=int, default=2, help="simulated worlds")
    p.add_argument(
        "--logging",
        type=parse_policy,
        nargs="+",
        default=[parse_policy("0.05:10"), parse_policy("0.3:50")],
        help="the champion's exploration when it logs: eps:M, pl:T:M or greedy",
    )
    p.add_argument(
        "--target",
        type=parse_policy,
        default=parse_policy("0.05:10"),
        help="the exploration every target policy is evaluated (and served) with",
    )
    p.add_argument("--pool", type=int, default=50, help="candidates every model re-ranks")
    p.add_argument("--champion-noise", type=float, default=1.0)
    p.add_argument("--better-noise", type=float, default=0.5)
    p.add_argument("--older-noise", type=float, default=2.0)
    p.add_argument("--reward", choices=("completed", "value"), default="completed")
    p.add_argument("--salts", type=int, default=200, help="A/A splits per day")
    p.add_argument("--draws", type=int, default=2000, help="slates per marginal probability")
    a = p.parse_args()
    noise = {"champion": a.champion_noise, "better": a.better_noise, "older": a.older_noise}
    pre_days = 3
    t0 = time.perf_counter()
    runs: list[Run] = []
    aa: list[tuple[float, int]] = []
    cuped_ratio: list[float] = []
    truths: list[dict[str, float]] = []
    aa_fallback = 0
    for seed in range(a.seeds):
        sim = SimulationSettings(
            seed=seed,
            n_users=a.users,
            n_creators=max(a.users // 20, 10),
            n_videos=a.videos,
            days=pre_days + a.days,
            catalog_history_days=30,
        )
        for day_idx in range(pre_days, pre_days + a.days):
            day = evaluate_day(
                sim, day_idx, a.logging, a.target, a.pool, noise, a.reward, seed, a.draws
            )
            runs += day.runs
            truths.append(day.truths)
            world = generate_world(sim)
            pre = pd.concat([world.impressions(d) for d in range(day_idx)], ignore_index=True)
            salts = [f"aa-{seed}-{day_idx}-{i}" for i in range(a.salts)]
            served = day.logs[label(a.logging[0])].impressions
            try:
                found_aa, ratio = ab_checks(served, pre, salts)
            except ValueError:  # a guardrail without variance: no skip at all in an arm
                aa_fallback += 1
                found_aa, ratio = ab_checks(world.impressions(day_idx), pre, salts)
            aa.append(found_aa)
            cuped_ratio.append(ratio)
            print(f"seed {seed} day {day_idx}: {time.perf_counter() - t0:.0f} s", flush=True)
    n_days = a.seeds * a.days
    print(
        f"\n{a.seeds} worlds x {a.days} days, {a.users} users, {a.videos} videos, pool "
        f"{a.pool}, noise champion {a.champion_noise} better {a.better_noise} older "
        f"{a.older_noise}, targets served with {label(a.target)}, reward {a.reward} "
        f"({time.perf_counter() - t0:.0f} s)\n"
    )
    rate = sum(r * n for r, n in aa) / sum(n for _, n in aa)
    print(
        f"A/A false positives (nominal 0.05), champion's log {label(a.logging[0])}: "
        f"{rate:.3f} over {sum(n for _, n in aa)} splits"
    )
    if aa_fallback:
        print(
            f"  ({aa_fallback} of {n_days} days on the logging policy's log of the day: the "
            "champion's served log had an arm without a single skip, which the analysis "
            "refuses; CUPED too)"
        )
    print(
        f"CUPED variance ratio (with / without): {np.mean(cuped_ratio):.3f} "
        f"(variance reduction {1 - np.mean(cuped_ratio):.1%})"
    )
    t = pd.DataFrame(truths)
    print(f"\ntrue {a.reward} per slot, mean over days (+- se):")
    for col in t.columns:
        se = t[col].std(ddof=1) / np.sqrt(len(t)) if len(t) > 1 else float("nan")
        print(f"  {col:<28} {t[col].mean():.4f} +- {se:.4f}")
    for col in t.columns:
        if col.startswith("champion eps") or col.startswith("champion PL"):
            cost = t["champion greedy"] - t[col]
            print(f"  cost of exploration {col[9:]:<19} {cost.mean():.4f} (greedy - explored)")
    table = summarise(runs)
    with pd.option_context(
        "display.width", 250, "display.max_columns", 20, "display.max_rows", 500
    ):
        print()
        print(table.round(4).to_string())


if __name__ == "__main__":
    main()
