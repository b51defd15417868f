"""`reelrank bento`: a Bento of the service with the ranker pinned by version, built for real
with ``bentoml build`` from the loop's registry; the pinned service ignores alias moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from models.registry import CHAMPION, alias_version, client
from serving.bento import build_bento
from serving.loader import ModelWatcher, load_ranker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_bento_pins_the_champion_version(loop, tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    settings = loop.settings
    champion = alias_version(client(settings), settings.ranker_model_name, CHAMPION)
    built = build_bento(settings)
    assert built.tag.startswith("reelrank:")
    assert built.ranker_version == champion
    bento = Path(built.path)
    meta = yaml.safe_load((bento / "bento.yaml").read_text())
    assert meta["labels"]["ranker_version"] == champion
    assert meta["labels"]["ranker_model"] == settings.ranker_model_name
    envs = {e["name"]: e["value"] for e in meta["envs"]}
    assert envs == {"REELRANK_SERVING__PINNED_VERSION": champion}
    src = bento / "src"
    assert (src / "serving" / "service.py").exists() and (src / "models" / "ranker.py").exists()
    # the service needs neither training nor monitoring nor the app shell
    assert not (src / "training").exists() and not (src / "monitoring").exists()
    assert not (src / "reelrank" / "cli.py").exists()
    assert not (src / "tests").exists() and not (src / "var").exists()
    reqs = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "xgboost" in reqs and "feast" in reqs

    with pytest.raises(Exception, match=r"(?i)not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        build_bento(settings, version="999")
    assert os.listdir(tmp_path / "bentoml" / "bentos" / "reelrank")  # the good one is stored


def test_a_pinned_service_serves_its_version_and_ignores_the_aliases(loop):
    settings = loop.settings
    champion = alias_version(client(settings), settings.ranker_model_name, CHAMPION)
    pinned = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"pinned_version": champion})}
    )
    model = load_ranker(pinned)
    assert model is not None and model.version == champion
    assert ModelWatcher(pinned, rec=None).poll() == []  # type: ignore[arg-type]
    missing = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"pinned_version": "999"})}
    )
    with pytest.raises(Exception, match=r"(?i)not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        load_ranker(missing)
