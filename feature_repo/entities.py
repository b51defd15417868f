"""Entities: the keys features hang on."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A viewer of the feed.",
)
video = Entity(
    name="video",
    join_keys=["video_id"],
    value_type=ValueType.STRING,
    description="A short video in the catalog.",
)
creator = Entity(
    name="creator",
    join_keys=["creator_id"],
    value_type=ValueType.STRING,
    description="The account that uploaded a video.",
)
