from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from feature_repo.columns import AFFINITY_COLUMNS
from features.batch import (
    N_TOPIC_SLOTS,
    as_of_timestamp,
    creator_stats,
    enrich_impressions,
    topic_slots,
    topic_vocabulary,
    user_creator_history,
    user_engagement,
    user_topic_affinity,
    video_stats,
)
from features.cross import (
    MODEL_FEATURES,
    add_creator_affinity,
    creator_affinity,
    creator_affinity_coded,
    model_matrix,
)
from ingest.simulator import generate_world
from reelrank.settings import SimulationSettings

pytestmark = pytest.mark.unit
D = date(2025, 6, 10)


def ts(day: int, hour: int = 12) -> pd.Timestamp:
    return pd.Timestamp(datetime(2025, 6, day, hour, tzinfo=UTC))


@pytest.fixture
def videos() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": ["v1", "v2", "v3"],
            "creator_id": ["c1", "c1", "c2"],
            "topic": ["cooking", "pets", "cooking"],
            "upload_ts": [ts(1), ts(5), ts(11)],  # v3 is uploaded after D
            "duration_s": [10.0, 20.0, 30.0],
        }
    )


def impression(day: int, user: str, video: str, **flags: bool) -> dict[str, object]:
    return {
        "ts": ts(day),
        "user_id": user,
        "video_id": video,
        "watch_time_s": 5.0,
        "duration_s": 10.0,
        "completed": flags.get("completed", False),
        "liked": flags.get("liked", False),
        "shared": False,
        "skipped": False,
        "followed": False,
    }


@pytest.fixture
def imp(videos) -> pd.DataFrame:
    rows = [
        impression(10, "u1", "v1", completed=True),  # day D
        impression(10, "u1", "v2"),
        impression(8, "u1", "v1", liked=True),  # 3 days before
        impression(1, "u1", "v2"),  # 10 days before: only in 28d
        impression(11, "u1", "v1", completed=True),  # the next day: never in D's features
        impression(9, "u2", "v1"),
    ]
    vocab = topic_vocabulary(videos["topic"])
    return enrich_impressions(pd.DataFrame(rows), videos, vocab)


def test_features_become_visible_the_next_midnight():
    assert as_of_timestamp(D) == datetime(2025, 6, 11, tzinfo=UTC)


def test_user_windows_count_only_the_past(imp):
    f = user_engagement(imp, D).set_index("user_id")
    assert f.loc["u1", "imp_1d"] == 2
    assert f.loc["u1", "imp_7d"] == 3
    assert f.loc["u1", "imp_28d"] == 4  # the impression of D + 1 is excluded
    assert f.loc["u1", "days_active_28d"] == 3
    assert f.loc["u2", "imp_1d"] == 0 and f.loc["u2", "imp_7d"] == 1
    assert (f["event_timestamp"] == as_of_timestamp(D)).all()


def test_rates_are_smoothed_towards_the_global_rate(imp):
    f = user_engagement(imp, D).set_index("user_id")
    # u2 has one impression, not completed: smoothed, never exactly 0
    assert 0.0 < f.loc["u2", "completion_rate_7d"] < f.loc["u1", "completion_rate_7d"]


def test_video_stats_cover_uploaded_videos_only(imp, videos):
    vocab = topic_vocabulary(videos["topic"])
    f = video_stats(imp, videos, D, vocab).set_index("video_id")
    assert set(f.index) == {"v1", "v2"}
    assert f.loc["v1", "v_imp_1d"] == 1 and f.loc["v1", "v_imp_7d"] == 3
    assert f.loc["v2", "v_age_hours"] == pytest.approx((6 * 24) - 12)
    assert f.loc["v1", "v_topic_slot"] == vocab.index("cooking")


def test_creator_stats(imp, videos):
    f = creator_stats(imp, videos, D).set_index("creator_id")
    assert f.loc["c1", "c_videos_28d"] == 2
    assert "c2" not in f.index  # its only video is uploaded after D


def test_creators_whose_videos_are_old_keep_their_stats(videos):
    old = pd.concat(
        [
            videos,
            pd.DataFrame(
                {
                    "video_id": ["v9"],
                    "creator_id": ["c9"],
                    "topic": ["pets"],
                    "upload_ts": [ts(1) - pd.Timedelta(days=60)],
                    "duration_s": [10.0],
                }
            ),
        ],
        ignore_index=True,
    )
    rows = [impression(10, "u1", "v9", completed=True) for _ in range(5)]
    e = enrich_impressions(pd.DataFrame(rows), old, topic_vocabulary(old["topic"]))
    f = creator_stats(e, old, D).set_index("creator_id")
    assert f.loc["c9", "c_videos_28d"] == 0 and f.loc["c9", "c_imp_28d"] == 5
    assert f.loc["c9", "c_completion_rate_28d"] > 0.5


def test_topic_affinity_is_a_distribution(imp, videos):
    vocab = topic_vocabulary(videos["topic"])
    f = user_topic_affinity(imp, D, len(vocab)).set_index("user_id")
    row = f.loc["u1", list(AFFINITY_COLUMNS)].to_numpy()
    assert row.sum() == pytest.approx(1.0)
    assert row[vocab.index("cooking")] > row[vocab.index("pets")]


def test_vocabulary_keeps_slots_stable_and_reserves_other():
    v1 = topic_vocabulary(pd.Series(["a", "a", "b"]))
    v2 = topic_vocabulary(pd.Series(["c", "c", "c", "a", "b"]), v1)
    assert v2[:2] == v1 and v2[2] == "c"
    many = pd.Series([f"t{i}" for i in range(40)])
    vocab = topic_vocabulary(many)
    assert len(vocab) == N_TOPIC_SLOTS - 1
    assert topic_slots(pd.Series(["never-seen"]), vocab)[0] == N_TOPIC_SLOTS - 1


def test_cross_feature_picks_the_affinity_of_the_video_topic():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {c: rng.random(4) for c in MODEL_FEATURES if not c.startswith(("x_", "ctx_"))}
    )
    for c in AFFINITY_COLUMNS:
        df[c] = 0.0
    df["aff_03"] = 0.7
    df["v_topic_slot"] = [3.0, 1.0, 3.0, 15.0]
    df["surface"] = ["spotlight", "discover", "stories", "spotlight"]
    df["position"] = [0, 3, 9, 4]
    df["x_creator_imp_28d"] = 0.0
    df["x_creator_pos_rate"] = 0.25
    with pytest.raises(KeyError, match="x_retrieval_score"):
        model_matrix(df)  # retrieval features are never silently invented
    df["x_retrieval_score"] = 0.5
    df["x_content_similarity"] = 0.1
    x = model_matrix(df)
    assert list(x.columns) == list(MODEL_FEATURES)
    assert x["x_topic_affinity"].tolist() == pytest.approx([0.7, 0.0, 0.7, 0.0])
    assert x["ctx_surface"].tolist() == [0.0, 1.0, 2.0, 0.0]
    # scored as served: every row at the first position; training keeps the logged one
    assert x["ctx_position"].tolist() == [0.0] * 4
    assert model_matrix(df, serve=False)["ctx_position"].tolist() == [0.0, 3.0, 9.0, 4.0]
    assert x.dtypes.eq(np.float32).all()
    df.loc[0, "surface"] = "reels"
    with pytest.raises(ValueError, match="unknown surface 'reels'"):
        model_matrix(df)


def test_user_creator_history_and_its_cross_feature_agree_between_paths():
    """The training path (vectorised over rows) and the serving path (one user's lists
    against many candidates) give the same user x creator features."""
    ts = pd.Timestamp("2025-06-10 12:00", tz="UTC")
    imp = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b"],
            "creator_id": ["c1", "c1", "c2", "c1", "c2"],
            "positive": [True, False, True, True, False],
            "ts": [ts] * 5,
        }
    )
    hist = user_creator_history(imp, date(2025, 6, 10), length=8)
    a = hist.set_index("user_id").loc["a"]
    assert list(a["uc_creator_ids"]) == ["c1", "c2"]  # most seen first
    assert list(a["uc_imp_28d"]) == [3.0, 1.0] and list(a["uc_pos_28d"]) == [2.0, 1.0]
    assert hist["event_timestamp"].iloc[0] == pd.Timestamp("2025-06-11", tz="UTC")

    rows = pd.DataFrame(
        {"user_id": ["a", "a", "a", "b", "z"], "creator_id": ["c1", "c2", "c9", "c2", "c1"]}
    )
    rows = rows.merge(hist, on="user_id", how="left")
    out = add_creator_affinity(rows)
    assert "uc_creator_ids" not in out.columns
    assert out["x_creator_imp_28d"].tolist() == [3.0, 1.0, 0.0, 1.0, 0.0]
    # (pos + 2 * 0.25) / (imp + 2)
    assert out["x_creator_pos_rate"].tolist() == pytest.approx([0.5, 0.5, 0.25, 0.5 / 3, 0.25])
    imp_a, rate_a = creator_affinity(
        a["uc_creator_ids"], a["uc_imp_28d"], a["uc_pos_28d"], ["c1", "c2", "c9"]
    )
    np.testing.assert_allclose(imp_a, out["x_creator_imp_28d"][:3], rtol=1e-6)
    np.testing.assert_allclose(rate_a, out["x_creator_pos_rate"][:3], rtol=1e-6)


def test_simulated_world_features_have_no_gaps():
    w = generate_world(SimulationSettings(n_users=100, n_creators=10, n_videos=200, days=3))
    imp = pd.concat([w.impressions(i) for i in range(3)], ignore_index=True)
    vocab = topic_vocabulary(w.videos["topic"])
    e = enrich_impressions(imp, w.videos, vocab)
    day = w.day(2)
    for f in (
        user_engagement(e, day),
        user_topic_affinity(e, day, len(vocab)),
        video_stats(e, w.videos, day, vocab),
        creator_stats(e, w.videos, day),
    ):
        assert not f.isna().any().any()
        assert len(f) > 0


def test_coded_creator_affinity_equals_the_dict_lookup():
    """The serving path's sorted search over creator codes gives creator_affinity's values,
    duplicates (last entry wins), creators no candidate has and empty histories included."""
    rng = np.random.default_rng(7)
    creators = [f"c{i}" for i in range(40)]
    code_of = {c: i for i, c in enumerate(creators)}
    for trial in range(50):
        n_user = int(rng.integers(0, 12))
        user = list(rng.choice([*creators, "gone-1", "gone-2"], n_user))
        imp = rng.integers(0, 9, n_user).astype(float).tolist()
        pos = [float(rng.integers(0, i + 1)) for i in imp]
        cands = list(rng.choice(creators, 30))
        want = creator_affinity(user, imp, pos, cands)
        got = creator_affinity_coded(
            np.array([code_of.get(c, -1) for c in user], dtype=np.int64),
            imp,
            pos,
            np.array([code_of[c] for c in cands], dtype=np.int64),
        )
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=f"trial {trial}")
