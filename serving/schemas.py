"""Typed HTTP contracts of the recommender service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ingest.schema import SURFACES

Surface = Literal["spotlight", "discover", "stories"]
assert set(SURFACES) == set(Surface.__args__)  # type: ignore[attr-defined]

# Input limits live here only: BentoML validates them and answers 400 with the field's name.
MAX_K = 100
MAX_CANDIDATES = 1000
MAX_FILTER_IDS = 1000
MAX_FEEDBACK_EVENTS = 1000
Arm = Literal["champion", "challenger"]


# strict=True on every request: "10" or true for k, 1 for a flag, are refused (400), not
# coerced; a JSON body carries the types the schema says.
class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: str = Field(
        ...,
        min_length=1,
        max_length=128,
        examples=["u000042"],
        description="an unknown user gets the cold-start path (cold_start: true)",
    )
    k: int = Field(10, ge=1, le=MAX_K, description="how many videos to return")
    surface: Surface = "spotlight"
    exclude_video_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_FILTER_IDS,
        description="videos not to return (e.g. on the client's screen already)",
    )
    blocked_creator_ids: list[str] = Field(
        default_factory=list, max_length=MAX_FILTER_IDS, description="creators the user blocked"
    )
    explain: bool = Field(
        False, description="add `why` to each item: retrieval source, value and heads, slot"
    )


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: str = Field(..., min_length=1, max_length=128, examples=["u000042"])
    video_ids: list[str] = Field(
        ..., min_length=1, max_length=MAX_CANDIDATES, examples=[["v000007", "v000123"]]
    )
    surface: Surface = "spotlight"


class Why(BaseModel):
    """Why a video is in the feed, and at that place (``explain: true``)."""

    source: Literal["two_tower", "popular", "fresh"] = Field(
        description="two_tower: retrieved for this user; popular/fresh: the cold-start pool"
    )
    retrieval_score: float | None = Field(description="two-tower similarity (two_tower only)")
    value: float = Field(description="the ranker's value score (the item's score)")
    heads: dict[str, float] = Field(description="per-engagement predictions blended into value")
    score_rank: int = Field(description="rank of value among every scored candidate (1: best)")
    slot: Literal["score", "diversity", "exploration"] = Field(
        description="score: best-valued from here down; diversity: lifted by the "
        "creator/topic spread; exploration: the slot kept for a fresh upload, or a video the "
        "exploration policy drew in place of the best remaining one"
    )


class ScoredVideo(BaseModel):
    video_id: str = Field(examples=["v000007"])
    score: float
    rank: int
    propensity: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="the probability the serving policy put this video at this rank, given "
        "the videos above it (exploration; 1 when the list is served as ranked)",
    )
    why: Why | None = Field(None, description="with explain: true only")


class RecommendResponse(BaseModel):
    request_id: str
    user_id: str
    surface: Surface
    arm: Arm = Field(description="experiment arm that served the list")
    model_name: str
    model_version: str
    retrieval_version: str | None = Field(
        None, description="reelrank-retrieval version that found the candidates"
    )
    cold_start: bool = Field(description="true when the user has no features yet")
    items: list[ScoredVideo]


class RankResponse(BaseModel):
    request_id: str
    user_id: str
    arm: Arm
    model_name: str
    model_version: str
    cold_start: bool
    items: list[ScoredVideo]
    unknown_video_ids: list[str] = Field(description="candidates not in the catalog, not scored")


class FeedbackEvent(BaseModel):
    """What the user did with one served video."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(
        ...,
        min_length=1,
        max_length=64,
        description="from the response",
        examples=["3f9c2a7e5b1d4c8e9a0b6d2f4e8c1a3b"],
    )
    video_id: str = Field(..., min_length=1, max_length=128, examples=["v000007"])
    watch_time_s: float = Field(..., ge=0.0, le=36000.0)
    completed: bool = False
    liked: bool = False
    shared: bool = False
    commented: bool = False
    followed: bool = False
    skipped: bool = False
    ts: AwareDatetime | None = Field(None, description="when it happened (default: on receipt)")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[FeedbackEvent] = Field(..., min_length=1, max_length=MAX_FEEDBACK_EVENTS)


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="events written to the lake by this call")
    duplicates: int = Field(
        0, description="events accepted before (same request, video and actions): not written"
    )


FEEDBACK_CLOCK_SKEW = timedelta(minutes=5)


def events_out_of_time(
    events: Sequence[FeedbackEvent], ttl_hours: float, now: datetime | None = None
) -> list[str]:
    """One message per event whose ``ts`` cannot be true: feedback is for a list served in
    the last ``ttl_hours`` (older lists are gone), and the future is allowed a few minutes
    of clock skew. Checked before anything is written (the service answers 422)."""
    now = now or datetime.now(UTC)
    earliest, latest = now - timedelta(hours=ttl_hours), now + FEEDBACK_CLOCK_SKEW

    def in_range(ts: datetime) -> bool:
        try:
            return earliest <= ts <= latest
        except OverflowError:  # year 1 or 9999 with an offset: not comparable in UTC
            return False

    return [
        f"events[{i}].ts {e.ts.isoformat()} is out of range: feedback is accepted from "
        f"{earliest.isoformat(timespec='seconds')} to {latest.isoformat(timespec='seconds')}"
        for i, e in enumerate(events)
        if e.ts is not None and not in_range(e.ts)
    ]
