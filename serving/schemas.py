"""Typed HTTP contracts of the recommender service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest.schema import SURFACES

Surface = Literal["spotlight", "discover", "stories"]
assert set(SURFACES) == set(Surface.__args__)  # type: ignore[attr-defined]

# Input limits live here only: BentoML validates them and answers 400 with the field's name.
MAX_K = 100
MAX_CANDIDATES = 1000


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(..., min_length=1, max_length=128, examples=["u000001"])
    k: int = Field(10, ge=1, le=MAX_K, description="how many videos to return")
    surface: Surface = "spotlight"


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(..., min_length=1, max_length=128, examples=["u000001"])
    video_ids: list[str] = Field(
        ..., min_length=1, max_length=MAX_CANDIDATES, examples=[["v000001", "v000002"]]
    )


class ScoredVideo(BaseModel):
    video_id: str
    score: float
    rank: int


class RecommendResponse(BaseModel):
    request_id: str
    user_id: str
    surface: Surface
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
    model_name: str
    model_version: str
    cold_start: bool
    items: list[ScoredVideo]
    unknown_video_ids: list[str] = Field(description="candidates not in the catalog, not scored")
