"""Typed HTTP contracts of the recommender service."""

from __future__ import annotations

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


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(..., min_length=1, max_length=128, examples=["u000001"])
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


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(..., min_length=1, max_length=128, examples=["u000001"])
    video_ids: list[str] = Field(
        ..., min_length=1, max_length=MAX_CANDIDATES, examples=[["v000001", "v000002"]]
    )
    surface: Surface = "spotlight"


class ScoredVideo(BaseModel):
    video_id: str
    score: float
    rank: int


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

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=64, description="from the response")
    video_id: str = Field(..., min_length=1, max_length=128)
    watch_time_s: float = Field(..., ge=0.0, le=36000.0)
    completed: bool = False
    liked: bool = False
    shared: bool = False
    commented: bool = False
    followed: bool = False
    skipped: bool = False
    ts: AwareDatetime | None = Field(None, description="when it happened (default: on receipt)")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[FeedbackEvent] = Field(..., min_length=1, max_length=MAX_FEEDBACK_EVENTS)


class FeedbackResponse(BaseModel):
    accepted: int
