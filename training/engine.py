"""Where the ranker trains: this process, or a ``dask.distributed`` cluster.

The cluster profile trains with ``xgboost.dask`` so the fit can use more machines than the
one running the Airflow task; the local profile trains in-process. Both go through
:func:`fit`, given the same frames and the same XGBoost parameters, and both return a plain
(in-memory) scikit-learn XGBoost model, so everything after the fit (evaluation, MLflow
logging, serving's ``inplace_predict``) cannot tell which engine trained it.

``training.dask_scheduler`` points at a running scheduler; unset, a ``LocalCluster`` of
``training.dask_workers`` workers lives for the duration of the fit. The LocalCluster's
workers are threads of this process: an Airflow task may run inside a Celery worker's
process, which must not fork long-lived children of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xgboost as xgb

from reelrank.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@contextmanager
def training_client(settings: Settings) -> Iterator[Client | None]:
    """A Dask client for the dask engine (None for local), closed on exit."""
    if settings.training_engine != "dask":
        yield None
        return
    from distributed import Client, LocalCluster

    t = settings.training
    if t.dask_scheduler:
        log.info("training on the Dask cluster at %s", t.dask_scheduler)
        with Client(t.dask_scheduler) as client:
            yield client
        return
    threads = max(1, t.nthread // t.dask_workers)
    with (
        LocalCluster(
            n_workers=t.dask_workers,
            threads_per_worker=threads,
            processes=False,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        log.info("training on a LocalCluster of %d workers x %d threads", t.dask_workers, threads)
        yield client


def _n_workers(client: Client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _to_dask(frame: pd.DataFrame, y: np.ndarray, parts: int) -> tuple[object, object]:
    """Features and labels as Dask collections split into the same row partitions."""
    import dask.dataframe as dd

    parts = max(1, min(parts, len(frame)))
    x = frame.reset_index(drop=True)
    labels = pd.DataFrame(y.reshape(len(y), -1)).reset_index(drop=True)
    labels.columns = [f"y{i}" for i in range(labels.shape[1])]
    dx = dd.from_pandas(x, npartitions=parts, sort=True)
    dy = dd.from_pandas(labels, npartitions=parts, sort=True)
    if y.ndim == 1:
        dy = dy["y0"]
    return dx, dy


def fit(
    factory: type[xgb.XGBModel],
    params: dict[str, object],
    x: pd.DataFrame,
    y: np.ndarray,
    eval_set: Sequence[tuple[pd.DataFrame, np.ndarray]] = (),
    client: Client | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[xgb.XGBModel, dict[str, dict[str, list[float]]]]:
    """Fit ``factory(**params)`` on (x, y), each row weighted by ``sample_weight`` when
    given; returns the in-memory model and its eval curves (``evals_result()``:
    ``validation_i`` -> metric -> per-round values)."""
    if client is None:
        model = factory(**params)
        model.fit(x, y, sample_weight=sample_weight, eval_set=list(eval_set) or None, verbose=False)
        return model, model.evals_result() if eval_set else {}

    from xgboost import dask as dxgb

    dask_factory: type[xgb.XGBModel] = (
        dxgb.DaskXGBClassifier if issubclass(factory, xgb.XGBClassifier) else dxgb.DaskXGBRegressor
    )
    parts = _n_workers(client)
    dx, dy = _to_dask(x, y, parts)
    dask_evals = [_to_dask(ex, ey, parts) for ex, ey in eval_set]
    dask_params = {k: v for k, v in params.items() if k != "n_jobs"}
    model = dask_factory(**dask_params)
    model.client = client
    # the weights split into the same row partitions as the features (a 1-D "label")
    dw = None if sample_weight is None else _to_dask(x, sample_weight, parts)[1]
    model.fit(dx, dy, sample_weight=dw, eval_set=dask_evals or None, verbose=False)
    evals = model.evals_result() if eval_set else {}
    # back to a plain in-memory model: the rest of the pipeline (and MLflow's flavour)
    # handles one kind of model whatever engine trained it
    local = factory(**params)
    local.load_model(bytearray(model.get_booster().save_raw("json")))
    return local, evals
