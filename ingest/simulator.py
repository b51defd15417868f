"""A seeded short-video world: users with hidden tastes, creators, videos, and daily feeds.

Every engagement signal in the impression log (watch time, completion, like, share, comment,
follow, skip) is drawn from one hidden ground-truth utility per (user, video), which the
simulator also exposes as an oracle so that evaluation can say how far a model is from the
best possible ranking. Each day is drawn from its own seeded generator, so regenerating one
day gives the same rows whatever else was generated before (idempotent ingestion).

The utility has five parts: the user's taste for the video's topic, the video's quality
(partly its creator's), a dislike of long videos, a bond with a few favourite creators, and
a latent taste beyond topic that only collaborative signals (who engaged with what) reveal.
What is observed also depends on context the oracle ignores: attention fades down the feed,
and the stories surface is swiped faster.

The feed that produced the log (the "logging policy") mixes popularity, a noisy topic match
and uniform exploration, like a platform whose previous model was mediocre.

Two versions exist (``settings.sim.version``). Version 1 is the static world above: a user's
utility for a video is the same every day and at every position. Version 2, the default,
adds the dynamics of real feeds, so that the order of what a user saw matters:

* **session intent**: on about half of their days a user opens the app wanting one topic or
  one of their favourite creators; it lifts those videos for the first few requests of the
  day (a geometric number), then the user moves on;
* **taste drift**: tastes wander slowly, an Ornstein-Uhlenbeck walk on the log of each
  topic's weight, so the world a model trained on last week is not quite today's;
* **boredom**: utility falls with the log of how often the user has already seen the
  video's topic and creator, counting earlier positions and requests of the day and what
  was seen before (halved each day);
* **bonds**: engaging with a creator's videos (completions, likes, follows) builds a bond
  that lifts that creator's next videos, saturating and fading slowly without engagement.

Version 2's user state on day ``d`` (the taste walk, recent exposure, bonds) follows from
the seeded draws of days ``0 .. d-1``: :meth:`World.state_on` replays them once and caches
the result, so every day is still drawn from its own seed and regenerating it gives the
same rows. The state is linear in users (exposure and bonds are sparse pairs, never a users
x creators matrix). The oracle scores a (user, video) pair with the user's state at the start
of the day; :class:`Moment` adds what happened within the session (intent, earlier repeats).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from reelrank.settings import SimulationSettings

TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "cooking": ("recipe", "kitchen", "pasta", "chef", "bake", "spicy", "dinner", "noodles"),
    "fitness": ("workout", "gym", "squat", "cardio", "protein", "abs", "running", "stretch"),
    "gaming": ("gameplay", "speedrun", "boss", "console", "minecraft", "clutch", "rank", "loot"),
    "music": ("guitar", "cover", "song", "piano", "beat", "vocals", "concert", "remix"),
    "dance": ("choreo", "dance", "moves", "challenge", "hiphop", "ballet", "groove", "tutorial"),
    "comedy": ("prank", "skit", "funny", "joke", "parody", "standup", "meme", "roast"),
    "pets": ("puppy", "kitten", "dog", "cat", "parrot", "adopt", "zoomies", "paws"),
    "travel": ("beach", "roadtrip", "hostel", "island", "hiking", "passport", "sunset", "city"),
    "fashion": ("outfit", "thrift", "sneakers", "style", "haul", "streetwear", "vintage", "fit"),
    "tech": ("gadget", "unboxing", "phone", "laptop", "coding", "review", "setup", "ai"),
    "sports": ("goal", "dunk", "football", "tennis", "highlights", "skate", "surf", "match"),
    "beauty": ("makeup", "skincare", "lipstick", "nails", "glow", "routine", "hair", "serum"),
}
TOPICS: tuple[str, ...] = tuple(TOPIC_WORDS)
FILLER = (
    "wait",
    "for",
    "the",
    "end",
    "best",
    "new",
    "my",
    "you",
    "this",
    "day",
    "pov",
    "so",
    "watch",
    "try",
    "part",
    "one",
    "how",
    "to",
    "why",
    "really",
)
COUNTRIES = ("US", "BR", "IN", "ID", "GB", "DE", "MX", "JP")
COUNTRY_P = (0.25, 0.15, 0.15, 0.1, 0.1, 0.1, 0.08, 0.07)
LANG = {
    "US": "en",
    "BR": "pt",
    "IN": "hi",
    "ID": "id",
    "GB": "en",
    "DE": "de",
    "MX": "es",
    "JP": "ja",
}
AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45+")
DEVICES = ("android", "ios", "web")
SURFACE_P = {"spotlight": 0.6, "discover": 0.3, "stories": 0.1}
VISUAL_DIM = 16
POLICY_VERSION = "sim-policy-v1"
# bumped whenever the same settings would simulate another world (2: creator bonds, latent
# tastes beyond topic, position and surface effects)
SIMULATOR_VERSION = 2
SURGE_TOPIC = "dance"
UTILITY_NOISE = 0.8  # std of the per-impression noise on the hidden utility
COMPLETE_AT = 0.8  # watched fraction that counts as a completion
CREATOR_BOND = 0.8  # utility bonus of a video by one of the user's favourite creators
N_FAVOURITE_CREATORS = 5
LATENT_DIM = 8  # tastes beyond topic: only learnable from who engaged with what
LATENT_WEIGHT = 0.6  # std of the latent term of the utility
POSITION_DECAY = 0.04  # attention lost per feed position (observed engagement, not utility)
STORIES_DURATION_PENALTY = 0.3  # the stories surface is swiped faster: long videos suffer
# version 2's dynamics (each on its own seeded generator, so version 1's draws are untouched)
TASTE_DRIFT_STEP = 0.12  # std of a day's step of the log-taste walk
TASTE_DRIFT_KEEP = 0.97  # the walk's pull back to the user's own tastes (per day)
TASTE_FLOOR = 0.01  # lets a topic a user never cared for become one they do
INTENT_SHARE = 0.5  # share of a user's days that start with an intent
INTENT_CREATOR_SHARE = 0.3  # of intents, the share aimed at a favourite creator, not a topic
INTENT_BOOST = 1.0  # utility bonus of the intended topic or creator while the intent lasts
INTENT_STOP = 0.5  # chance, after each request, that the user leaves the intent
BOREDOM_TOPIC = 0.12  # utility lost per log(1 + earlier views of the same topic)
BOREDOM_CREATOR = 0.3  # utility lost per log(1 + earlier views of the same creator)
EXPOSURE_KEEP = 0.5  # share of yesterday's exposure that still bores
BOND_MAX = 0.8  # utility bonus of a bond built from scratch, at saturation
BOND_SCALE = 4.0  # engagements that build about 63% of a bond
BOND_KEEP = 0.97  # share of the engagements behind a bond that count the next day
STATES_KEPT = 8  # version 2 user states cached per world (day 0 always)
# the noiseless utility (plus context) at which completion is a coin flip: the logit of
# COMPLETE_AT undone through the watched fraction's sigmoid(1.4 (z + 0.3))
_COMPLETION_Z = float(np.log(COMPLETE_AT / (1.0 - COMPLETE_AT)) / 1.4 - 0.3)


def _ts(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


@dataclass(frozen=True)
class PairCounts:
    """A sparse (user, other) -> count table: sorted unique keys ``user * width + other``."""

    keys: np.ndarray
    values: np.ndarray

    @staticmethod
    def empty() -> PairCounts:
        return PairCounts(np.empty(0, np.int64), np.empty(0, np.float64))

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The count of each of ``keys`` (0 where absent)."""
        if not len(self.keys):
            return np.zeros(len(keys))
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.values[at], 0.0)

    def decayed_plus(self, keep: float, keys: np.ndarray, add: np.ndarray) -> PairCounts:
        """``keep`` x these counts plus ``add`` at ``keys`` (repeats summed); pairs that fell
        under 0.01 are dropped, so the table stays as small as recent activity."""
        all_keys = np.concatenate([self.keys, keys])
        all_values = np.concatenate([keep * self.values, add.astype(np.float64)])
        uniq, inv = np.unique(all_keys, return_inverse=True)
        summed = np.bincount(inv, weights=all_values, minlength=len(uniq))
        kept = summed >= 0.01
        return PairCounts(uniq[kept], summed[kept])


@dataclass(frozen=True)
class UserState:
    """Version 2's hidden state of every user at the start of a day."""

    day_idx: int
    taste_walk: np.ndarray  # (n_users, n_topics) log-taste offsets of the drift walk
    topic_seen: np.ndarray  # (n_users, n_topics) exposure carried over from earlier days
    creator_seen: PairCounts  # (user, creator) exposure carried over from earlier days
    engaged: PairCounts  # (user, creator) decayed engagements behind the bonds


@dataclass(frozen=True)
class Moment:
    """What happened earlier in a session, one value per scored (user, video) pair: the
    intended topic and creator (-1: none) and the views of the same topic and creator
    earlier that day. The oracle without a moment scores at the start of the day."""

    intent_topic: np.ndarray
    intent_creator: np.ndarray
    topic_seen_today: np.ndarray
    creator_seen_today: np.ndarray


@dataclass
class World:
    """Everything about the world; the hidden parts (tastes, qualities) are never in the lake."""

    sim: SimulationSettings
    users: pd.DataFrame
    videos: pd.DataFrame
    interests: np.ndarray  # (n_users, n_topics), rows sum to 1: hidden taste
    activity: np.ndarray  # (n_users,) probability of opening the app on a day
    video_topic: np.ndarray  # (n_videos,) topic index
    video_quality: np.ndarray  # (n_videos,) hidden quality incl. creator quality
    video_creator: np.ndarray  # (n_videos,) creator index
    favourite_creators: np.ndarray  # (n_users, N_FAVOURITE_CREATORS) hidden creator bonds
    user_latent: np.ndarray  # (n_users, LATENT_DIM) hidden taste beyond topic
    video_latent: np.ndarray  # (n_videos, LATENT_DIM)
    user_index: dict[str, int]
    video_index: dict[str, int]
    _states: dict[int, UserState] = field(default_factory=dict, repr=False, compare=False)
    _last_draw: tuple[int, DayDraw] | None = field(default=None, repr=False, compare=False)
    _tastes: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _served: dict[int, DayDraw] = field(default_factory=dict, repr=False, compare=False)

    @property
    def version(self) -> int:
        return self.sim.version

    # -- time ---------------------------------------------------------------------------
    def day(self, i: int) -> date:
        return self.sim.start_date + timedelta(days=i)

    def day_index(self, d: date) -> int:
        return (d - self.sim.start_date).days

    @property
    def scenario_start(self) -> int:
        return self.sim.scenario_day if self.sim.scenario_day is not None else self.sim.days - 1

    def interests_on(self, day_idx: int) -> np.ndarray:
        """Tastes on a day: version 2's slow drift, then the drift scenario's change from
        ``scenario_start`` on."""
        if self.version == 1:
            return self._scenario_tastes(self.interests, day_idx)
        # the oracle asks once per user in offline evaluation: one array per day, kept
        if day_idx not in self._tastes:
            if len(self._tastes) >= STATES_KEPT:
                del self._tastes[next(iter(self._tastes))]
            self._tastes[day_idx] = self._scenario_tastes(self.drifted_tastes(day_idx), day_idx)
        return self._tastes[day_idx]

    def _scenario_tastes(self, base: np.ndarray, day_idx: int) -> np.ndarray:
        if self.sim.scenario == "none" or day_idx < self.scenario_start:
            return base
        out = base.copy()
        if self.sim.scenario == "topic_surge":
            k = TOPICS.index(SURGE_TOPIC)
            out = 0.45 * out
            out[:, k] += 0.55
        elif self.sim.scenario == "interest_shift":
            segment = (self.users["country"] == COUNTRIES[0]).to_numpy()
            out[segment] = np.roll(out[segment], 3, axis=1)
        return out

    def drifted_tastes(self, day_idx: int) -> np.ndarray:
        """Version 2's tastes on a day before any scenario: the user's own tastes moved by
        the day's point of the log-taste walk (rows sum to 1)."""
        walk = self.state_on(day_idx).taste_walk
        tastes = (self.interests + TASTE_FLOOR) * np.exp(walk)
        return tastes / tastes.sum(axis=1, keepdims=True)

    # -- version 2's user state ---------------------------------------------------------
    def state_on(self, day_idx: int) -> UserState:
        """The user state at the start of ``day_idx`` (version 2), replayed from day 0's
        state through the seeded draws of the days before and cached: each day costs one
        draw, linear in users, whatever order days are asked for in."""
        if not self._states:
            n_u, k = len(self.users), len(TOPICS)
            self._states[0] = UserState(
                0, np.zeros((n_u, k)), np.zeros((n_u, k)), PairCounts.empty(), PairCounts.empty()
            )
        if day_idx in self._states:
            return self._states[day_idx]
        start = max(d for d in self._states if d <= day_idx)
        state = self._states[start]
        for d in range(start, day_idx):
            state = _next_state(self, state, self.draw(d))
            self._states[d + 1] = state
            if len(self._states) > STATES_KEPT:  # the oldest but day 0 goes
                del self._states[min(x for x in self._states if x > 0)]
        return state

    def record_served(self, day_idx: int, draw: DayDraw) -> None:
        """Make ``draw`` (a day served by another policy, :func:`respond`) day ``day_idx`` of
        this world: later days' user state (boredom, bonds, tastes) follows from what was
        served, not from the logging policy. States and tastes cached after it are dropped."""
        self._served[day_idx] = draw
        self._last_draw = None
        for cache in (self._states, self._tastes):
            for d in [d for d in cache if d > day_idx]:
                del cache[d]

    def draw(self, day_idx: int) -> DayDraw:
        """The arrays of one simulated day (the last one drawn is kept: ingesting day d and
        then asking for day d + 1's state draws day d once); a served day where recorded."""
        if day_idx in self._served:
            return self._served[day_idx]
        if self._last_draw is not None and self._last_draw[0] == day_idx:
            return self._last_draw[1]
        out = _draw_day(self, day_idx)
        self._last_draw = (day_idx, out)
        return out

    # -- ground truth -------------------------------------------------------------------
    def oracle_utility(
        self,
        user_ids: np.ndarray | pd.Series,
        video_ids: np.ndarray | pd.Series,
        day: date,
        moment: Moment | None = None,
    ) -> np.ndarray:
        """Expected utility of showing each video to each user on ``day`` (the oracle).

        Version 2 scores with each user's state at the start of ``day`` (drifted tastes,
        bonds, boredom carried over from earlier days), plus ``moment`` when given: the
        session's intent and the repeats seen earlier that day, one value per pair."""
        u = np.fromiter((self.user_index[x] for x in user_ids), dtype=np.int64)
        v = np.fromiter((self.video_index[x] for x in video_ids), dtype=np.int64)
        day_idx = self.day_index(day)
        if self.version == 1:
            return self._utility(u, v, self.interests_on(day_idx))
        return self._utility(u, v, self.interests_on(day_idx), self.state_on(day_idx), moment)

    def oracle_top(
        self, user_id: str, video_ids: np.ndarray, day: date, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The user's ``n`` best of ``video_ids`` on ``day`` by hidden utility, best first
        (ties in input order), and the utility of every one of ``video_ids``."""
        util = self.oracle_utility(np.repeat(user_id, len(video_ids)), video_ids, day)
        top = np.argpartition(-util, min(n, len(video_ids) - 1))[:n]
        return video_ids[top[np.argsort(-util[top], kind="stable")]], util

    def completion_probability(
        self, user_ids: np.ndarray | pd.Series, video_ids: np.ndarray | pd.Series, day: date
    ) -> np.ndarray:
        """P(the user completes the video) on ``day``: the oracle's judgement of any video,
        shown or not (completion happens when the noisy utility clears a threshold)."""
        return _completion_chance(self.oracle_utility(user_ids, video_ids, day))

    def _utility(
        self,
        u: np.ndarray,
        v: np.ndarray,
        interests: np.ndarray,
        state: UserState | None = None,
        moment: Moment | None = None,
    ) -> np.ndarray:
        k = len(TOPICS)
        aff = interests[u, self.video_topic[v]]
        duration = self.videos["duration_s"].to_numpy()[v]
        bond = (self.favourite_creators[u] == self.video_creator[v][:, None]).any(axis=1)
        static = (
            1.3 * np.log(k * aff + 0.1)
            + self.video_quality[v]
            - 0.35 * np.log(duration / 20.0)
            + CREATOR_BOND * bond
            + LATENT_WEIGHT
            * np.einsum("ij,ij->i", self.user_latent[u], self.video_latent[v])
            / np.sqrt(LATENT_DIM)
        )
        if state is None:  # version 1: the same every day and at every position
            return static
        topic, creator = self.video_topic[v], self.video_creator[v]
        pair = u * self.sim.n_creators + creator
        topic_seen = state.topic_seen[u, topic]
        creator_seen = state.creator_seen.get(pair)
        intent = np.zeros(len(u))
        if moment is not None:
            topic_seen = topic_seen + moment.topic_seen_today
            creator_seen = creator_seen + moment.creator_seen_today
            hit = (moment.intent_topic == topic) | (moment.intent_creator == creator)
            intent = INTENT_BOOST * hit
        grown = BOND_MAX * (1.0 - np.exp(-state.engaged.get(pair) / BOND_SCALE))
        return (
            static
            + grown
            + intent
            - BOREDOM_TOPIC * np.log1p(topic_seen)
            - BOREDOM_CREATOR * np.log1p(creator_seen)
        )

    # -- the lake's view of a day ---------------------------------------------------------
    def arrival_day(self, ts: pd.Series) -> pd.Series:
        """Rows created before the simulation starts arrive in one bootstrap partition."""
        bootstrap = self.sim.start_date - timedelta(days=1)
        days = ts.dt.date
        return days.where(days >= self.sim.start_date, bootstrap)

    def impressions(self, day_idx: int) -> pd.DataFrame:
        """The impression log of one day, drawn from that day's own seeded generator."""
        return simulate_day(self, day_idx)


@functools.lru_cache(maxsize=1)
def _world_of(sim_json: str) -> World:
    return generate_world(SimulationSettings.model_validate_json(sim_json))


def world_for(sim: SimulationSettings) -> World:
    """The world of ``sim``, drawn once per process: evaluation asks for the oracle more
    than once, and a large world takes a while to draw."""
    return _world_of(sim.model_dump_json())


# Long on purpose: the order of the seeded draws below is the world's identity (the same seed
# must give the same world); splitting it is a change of world, left to the simulator's v2.
def generate_world(sim: SimulationSettings) -> World:
    rng = np.random.default_rng([sim.seed, 0])
    k = len(TOPICS)
    start = _ts(sim.start_date)

    # users: peaked tastes over a few topics, a tenth sign up during the simulation
    n_u = sim.n_users
    interests = rng.dirichlet(np.full(k, 0.25), size=n_u)
    activity = np.clip(rng.beta(2.0, 2.5, size=n_u), 0.05, 0.95)
    new_user = rng.random(n_u) < 0.1
    signup = np.where(
        new_user,
        rng.uniform(0, sim.days * 86400, n_u),
        -rng.uniform(1, 365 * 86400, n_u),
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:06d}" for i in range(n_u)],
            "signup_ts": start + pd.to_timedelta(np.round(signup), unit="s"),
            "country": rng.choice(COUNTRIES, size=n_u, p=COUNTRY_P),
            "age_bucket": rng.choice(AGE_BUCKETS, size=n_u, p=(0.15, 0.35, 0.3, 0.12, 0.08)),
            "device": rng.choice(DEVICES, size=n_u, p=(0.6, 0.35, 0.05)),
        }
    )

    # creators: a main topic and a hidden quality
    n_c = sim.n_creators
    creator_topic = rng.integers(0, k, n_c)
    creator_quality = rng.normal(0.0, 0.4, n_c)
    creator_country = rng.choice(COUNTRIES, size=n_c, p=COUNTRY_P)

    # videos: mostly on their creator's topic; captions carry topic words
    n_v = sim.n_videos
    creator = rng.integers(0, n_c, n_v)
    off_topic = rng.random(n_v) < 0.15
    topic = np.where(off_topic, rng.integers(0, k, n_v), creator_topic[creator])
    # a constant upload rate over the catalog's history and the simulated days
    upload = rng.uniform(-sim.catalog_history_days * 86400, sim.days * 86400 - 60, n_v)
    duration = np.clip(np.round(rng.lognormal(np.log(25.0), 0.7, n_v), 1), 3.0, 600.0)
    quality = rng.normal(0.0, 0.5, n_v) + creator_quality[creator]
    centroids = rng.normal(0.0, 1.0, (k, VISUAL_DIM))
    visual = (centroids[topic] + rng.normal(0.0, 0.7, (n_v, VISUAL_DIM))).astype(np.float32)

    captions, hashtags = [], []
    for i in range(n_v):
        words = TOPIC_WORDS[TOPICS[topic[i]]]
        n_topic = int(rng.integers(2, 5))
        n_fill = int(rng.integers(2, 5))
        chosen = list(rng.choice(words, n_topic, replace=False)) + list(
            rng.choice(FILLER, n_fill, replace=False)
        )
        rng.shuffle(chosen)
        captions.append(" ".join(chosen))
        tags = list(rng.choice(words, int(rng.integers(1, 4)), replace=False))
        if rng.random() < 0.3:
            tags.append("fyp")
        hashtags.append([f"#{t}" for t in tags])

    videos = pd.DataFrame(
        {
            "video_id": [f"v{i:06d}" for i in range(n_v)],
            "creator_id": [f"c{c:05d}" for c in creator],
            "upload_ts": start + pd.to_timedelta(np.round(upload), unit="s"),
            "duration_s": duration,
            "caption": captions,
            "hashtags": hashtags,
            "topic": [TOPICS[t] for t in topic],
            "language": [LANG[creator_country[c]] for c in creator],
            "visual_embedding": list(visual),
        }
    )
    # hidden creator bonds: each user is a fan of a few creators, mostly within their tastes
    # (own generator, so adding them left every other draw of the world unchanged)
    fan_rng = np.random.default_rng([sim.seed, 2])
    n_fav = min(N_FAVOURITE_CREATORS, n_c)
    favourites = np.empty((n_u, n_fav), dtype=np.int64)
    # users x creators probabilities a block of users at a time: the whole matrix is
    # 3.6 GB at 300k users and 1,500 creators; the draws are the same either way
    for lo in range(0, n_u, 4096):
        p_creator = interests[lo : lo + 4096][:, creator_topic] + 1e-3
        p_creator /= p_creator.sum(axis=1, keepdims=True)
        for j, p in enumerate(p_creator):
            favourites[lo + j] = fan_rng.choice(n_c, size=n_fav, replace=False, p=p)
    # latent tastes: what makes two cooking videos differ for two cooking fans
    user_latent = fan_rng.normal(0.0, 1.0, (n_u, LATENT_DIM))
    video_latent = fan_rng.normal(0.0, 1.0, (n_v, LATENT_DIM))
    return World(
        sim=sim,
        users=users,
        videos=videos,
        interests=interests,
        activity=activity,
        video_topic=topic,
        video_quality=quality,
        video_creator=creator,
        favourite_creators=favourites,
        user_latent=user_latent,
        video_latent=video_latent,
        user_index={u: i for i, u in enumerate(users["user_id"])},
        video_index={v: i for i, v in enumerate(videos["video_id"])},
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class DayDraw:
    """One simulated day as arrays, one entry per impression (``req_*``: per request)."""

    u: np.ndarray
    v: np.ndarray
    req_user: np.ndarray
    req_offset: np.ndarray
    surfaces: np.ndarray
    position: np.ndarray
    duration: np.ndarray
    watch: np.ndarray
    completed: np.ndarray
    liked: np.ndarray
    shared: np.ndarray
    commented: np.ndarray
    followed: np.ndarray
    skipped: np.ndarray
    #: the hidden utility of each impression at its moment (the oracle's truth of the feed)
    utility: np.ndarray
    #: P(completion) of each impression before the noise draw (position and surface included)
    p_complete: np.ndarray


def _earlier_count(keys: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows (in row order) carry the same key."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = np.arange(len(keys)) - run_start
    return out


def _session_moment(
    world: World,
    day_idx: int,
    req_user: np.ndarray,
    interests: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    m: int,
) -> Moment:
    """Version 2's within-day context of every impression: the session intent of the
    user's request and the views of the same topic and creator earlier that day (earlier
    requests, and earlier positions of the same request). Rows of a user are contiguous
    and in time order (requests are sorted by time within a user), so row order is time."""
    rng = np.random.default_rng([world.sim.seed, 4, day_idx])
    n_u = len(world.users)
    has_intent = rng.random(n_u) < INTENT_SHARE
    on_creator = rng.random(n_u) < INTENT_CREATOR_SHARE
    cum = np.cumsum(interests, axis=1)
    topic = (rng.random(n_u)[:, None] * cum[:, -1:] > cum).sum(axis=1)
    fav = world.favourite_creators
    creator = fav[np.arange(n_u), rng.integers(0, fav.shape[1], n_u)]
    lasts = rng.geometric(INTENT_STOP, n_u)  # requests the intent lasts (at least one)
    intent_topic = np.where(has_intent & ~on_creator, topic, -1)
    intent_creator = np.where(has_intent & on_creator, creator, -1)

    n_r = len(req_user)
    first = np.r_[True, req_user[1:] != req_user[:-1]] if n_r else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    rank = np.arange(n_r) - np.repeat(starts, np.diff(np.r_[starts, n_r]))
    on = rank < lasts[req_user]
    row_on = np.repeat(on, m)
    k = len(TOPICS)
    return Moment(
        intent_topic=np.where(row_on, intent_topic[u], -1),
        intent_creator=np.where(row_on, intent_creator[u], -1),
        topic_seen_today=_earlier_count(u * k + world.video_topic[v]).astype(np.float64),
        creator_seen_today=_earlier_count(u * world.sim.n_creators + world.video_creator[v]).astype(
            np.float64
        ),
    )


def _next_state(world: World, state: UserState, draw: DayDraw) -> UserState:
    """Version 2's user state after a day: the taste walk takes a seeded step, exposure is
    halved and the day's views added, engagements fade and the day's are added."""
    k, n_c = len(TOPICS), world.sim.n_creators
    nxt = state.day_idx + 1
    rng = np.random.default_rng([world.sim.seed, 3, nxt])
    walk = TASTE_DRIFT_KEEP * state.taste_walk + rng.normal(
        0.0, TASTE_DRIFT_STEP, state.taste_walk.shape
    )
    n_u = len(world.users)
    topic_key = draw.u * k + world.video_topic[draw.v]
    views = np.bincount(topic_key, minlength=n_u * k).reshape(n_u, k)
    topic_seen = EXPOSURE_KEEP * (state.topic_seen + views)
    pair = draw.u * n_c + world.video_creator[draw.v]
    creator_seen = state.creator_seen.decayed_plus(1.0, pair, np.ones(len(pair)))
    creator_seen = PairCounts(creator_seen.keys, EXPOSURE_KEEP * creator_seen.values)
    engagement = draw.completed + draw.liked + 2.0 * draw.followed
    hit = engagement > 0
    engaged = state.engaged.decayed_plus(BOND_KEEP, pair[hit], engagement[hit])
    return UserState(nxt, walk, topic_seen, creator_seen, engaged)


def simulate_day(world: World, day_idx: int) -> pd.DataFrame:
    """The impression log of day ``day_idx`` (0-based), drawn from the hidden utility."""
    d = world.draw(day_idx)
    stamp = world.day(day_idx).strftime("%Y%m%d")
    req_ids = np.array([f"r{stamp}-{i:07d}" for i in range(len(d.req_user))])
    return day_frame(world, day_idx, d, req_ids, np.array([POLICY_VERSION]))


def day_frame(
    world: World, day_idx: int, d: DayDraw, request_ids: np.ndarray, model_version: np.ndarray
) -> pd.DataFrame:
    """The lake's impression rows of a drawn day: one per impression, in draw order.
    ``request_ids`` has one id per request; ``model_version`` one per request, or a single
    value for the whole day."""
    sim = world.sim
    n_r, m = len(d.req_user), sim.impressions_per_request
    broken = sim.scenario == "broken_feature" and day_idx >= world.scenario_start
    day_start = _ts(world.day(day_idx))
    ts = day_start + pd.to_timedelta(
        np.round(np.repeat(d.req_offset, m) + np.tile(np.arange(m) * 2.0, n_r), 3), unit="s"
    )
    stamp = world.day(day_idx).strftime("%Y%m%d")
    versions = model_version[0] if len(model_version) == 1 else np.repeat(model_version, m)
    return pd.DataFrame(
        {
            "event_id": [f"e{stamp}-{i:08d}" for i in range(len(d.u))],
            "request_id": np.repeat(request_ids, m),
            "ts": ts,
            "user_id": world.users["user_id"].to_numpy()[d.u],
            "video_id": world.videos["video_id"].to_numpy()[d.v],
            "surface": np.repeat(d.surfaces, m),
            "position": d.position,
            # a broken upstream feed: from the scenario day on, watch time arrives in minutes
            # (still a valid number, so the lake's contract lets it through)
            "watch_time_s": np.round(d.watch / 60.0, 4) if broken else d.watch,
            "duration_s": d.duration,
            "completed": d.completed,
            "liked": d.liked,
            "shared": d.shared,
            "commented": d.commented,
            "followed": d.followed,
            "skipped": d.skipped,
            "model_version": versions,
        }
    )


# Long on purpose, like generate_world: one day's draws in one seeded order.
def _draw_day(world: World, day_idx: int) -> DayDraw:
    """Draw day ``day_idx`` (0-based) from the hidden utility: who was shown what, and
    how they reacted."""
    sim = world.sim
    rng = np.random.default_rng([sim.seed, 1, day_idx])
    day_start = _ts(world.day(day_idx))
    k = len(TOPICS)
    interests = world.interests_on(day_idx)
    req_user, req_offset = day_requests(world, day_idx, rng)
    n_r, m = len(req_user), sim.impressions_per_request

    # what the logging policy shows: videos uploaded before today, retired after the
    # catalog's history window (short videos live for weeks, not years)
    uploaded = world.videos["upload_ts"]
    retire = day_start - pd.Timedelta(days=sim.catalog_history_days)
    avail = np.flatnonzero(((uploaded < day_start) & (uploaded >= retire)).to_numpy())
    popularity = np.exp(0.8 * world.video_quality[avail])
    if sim.scenario == "topic_surge" and day_idx >= world.scenario_start:
        popularity = popularity * np.where(
            world.video_topic[avail] == TOPICS.index(SURGE_TOPIC), 6.0, 1.0
        )
    popularity /= popularity.sum()
    by_topic = [avail[world.video_topic[avail] == t] for t in range(k)]

    slot = rng.random((n_r, m))
    shown = rng.choice(avail, size=(n_r, m))  # uniform exploration by default
    pop_mask = slot < 0.4
    shown[pop_mask] = rng.choice(avail, size=int(pop_mask.sum()), p=popularity)
    pers_mask = (slot >= 0.4) & (slot < 0.75)
    # a noisy topic match: the user's taste blurred with uniform noise
    noisy = 0.6 * interests[req_user] + 0.4 / k
    cum = np.cumsum(noisy, axis=1)
    draw = rng.random(n_r)[:, None] * cum[:, -1:]
    pick_topic = np.repeat((draw > cum).sum(axis=1)[:, None], m, axis=1)
    for t in range(k):
        sel = pers_mask & (pick_topic == t)
        if sel.any() and len(by_topic[t]):
            shown[sel] = by_topic[t][rng.integers(0, len(by_topic[t]), int(sel.sum()))]

    # a fresh-content pool: a share of slots goes to videos uploaded in the 24 hours before
    # the request, including ones uploaded minutes earlier the same day (cold start)
    fresh_mask = (slot >= 0.75) & (slot < 0.75 + sim.fresh_slot_share)
    upload_s = ((uploaded - day_start).dt.total_seconds()).to_numpy()
    fresh = np.flatnonzero((upload_s >= -86400) & (upload_s < 86400))
    fresh = fresh[np.argsort(upload_s[fresh], kind="stable")]
    fresh_up = upload_s[fresh]
    rows, cols = np.nonzero(fresh_mask)
    lo = np.searchsorted(fresh_up, req_offset[rows] - 86400, side="left")
    hi = np.searchsorted(fresh_up, req_offset[rows], side="left")
    ok = hi > lo
    pick = lo[ok] + np.floor(rng.random(int(ok.sum())) * (hi[ok] - lo[ok])).astype(np.int64)
    shown[rows[ok], cols[ok]] = fresh[pick]

    # the surface draw comes after the feed's in this seeded order (the world's identity)
    surfaces = draw_surfaces(rng, n_r)
    return respond(world, day_idx, rng, req_user, req_offset, surfaces, shown)


def day_requests(
    world: World, day_idx: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Who opens the app on day ``day_idx`` and when each of their feed requests happens:
    the user index of every request and its second of the day, in time order within the
    day (the first draws of the day's generator ``rng``)."""
    day_start = _ts(world.day(day_idx))
    signed_up = (world.users["signup_ts"] < day_start).to_numpy()
    active = signed_up & (rng.random(len(world.users)) < world.activity)
    users = np.flatnonzero(active)
    n_req = rng.poisson(world.sim.requests_per_active_user, len(users)) + 1
    req_user = np.repeat(users, n_req)
    # when each request happens (sorted, so request i precedes request i + 1)
    req_offset = np.sort(rng.uniform(0, 86400 - 60, len(req_user)))
    return req_user, req_offset


def draw_surfaces(rng: np.random.Generator, n_requests: int) -> np.ndarray:
    """The surface (spotlight, discover, stories) of each request."""
    return rng.choice(list(SURFACE_P), size=n_requests, p=list(SURFACE_P.values()))


def respond(
    world: World,
    day_idx: int,
    rng: np.random.Generator,
    req_user: np.ndarray,
    req_offset: np.ndarray,
    surfaces: np.ndarray,
    shown: np.ndarray,
) -> DayDraw:
    """How users react to the feeds ``shown`` (requests x impressions_per_request video
    indices, best slot first) on day ``day_idx``: each impression's hidden utility at its
    moment (version 2: the user's state that day, the session's intent, earlier repeats),
    then the observed outcomes drawn from it with ``rng``. Whatever policy chose the feeds
    (the logging policy, or a served model in a closed loop), users respond the same way."""
    n_r, m = shown.shape
    interests = world.interests_on(day_idx)
    u = np.repeat(req_user, m)
    v = shown.reshape(-1)
    if world.version == 1:
        utility = world._utility(u, v, interests)
    else:
        moment = _session_moment(world, day_idx, req_user, interests, u, v, m)
        utility = world._utility(u, v, interests, world.state_on(day_idx), moment)
    duration = world.videos["duration_s"].to_numpy()[v]
    # what is observed also depends on context the oracle ignores: attention fades down the
    # feed, and the stories surface is swiped faster (hurting long videos)
    position = np.tile(np.arange(m, dtype=np.int32), n_r)
    stories = np.repeat(surfaces == "stories", m)
    context = -POSITION_DECAY * position - STORIES_DURATION_PENALTY * stories * np.log(
        duration / 20.0
    ).clip(min=0.0)
    mean_z = utility + context
    z = mean_z + rng.normal(0.0, UTILITY_NOISE, len(u))
    frac = _sigmoid(1.4 * (z + 0.3))
    completed = frac > COMPLETE_AT
    watch = np.round(np.where(completed, duration, duration * frac), 2)
    skipped = frac < 0.15
    engaged = ~skipped
    liked = engaged & (rng.random(len(u)) < _sigmoid(z - 3.4))
    shared = engaged & (rng.random(len(u)) < _sigmoid(z - 5.0))
    commented = engaged & (rng.random(len(u)) < _sigmoid(z - 5.0))
    followed = engaged & (rng.random(len(u)) < _sigmoid(z - 5.5))

    return DayDraw(
        u=u,
        v=v,
        req_user=req_user,
        req_offset=req_offset,
        surfaces=surfaces,
        position=position,
        duration=duration,
        watch=watch,
        completed=completed,
        liked=liked,
        shared=shared,
        commented=commented,
        followed=followed,
        skipped=skipped,
        utility=utility,
        p_complete=_completion_chance(mean_z),
    )


def _completion_chance(mean_z: np.ndarray) -> np.ndarray:
    """P(completed) given the noiseless utility plus context: completion happens when the
    noisy utility clears the threshold of ``COMPLETE_AT`` watched."""
    from scipy.special import ndtr

    return ndtr((mean_z - _COMPLETION_Z) / UTILITY_NOISE)
