"""Every Asset that connects the reelrank DAGs, named in one place.

features ready  -> reelrank_training
drift detected  -> reelrank_training
model promoted  -> reelrank_deploy
"""

from airflow.sdk import Asset

FEATURES_READY = Asset("reelrank://features/daily", group="reelrank")
MODEL_PROMOTED = Asset("reelrank://models/reelrank-ranker/champion", group="reelrank")
DRIFT_DETECTED = Asset("reelrank://monitoring/drift-detected", group="reelrank")

DEFAULT_ARGS = {"owner": "reelrank", "retries": 2}
START = "2025-01-01"
