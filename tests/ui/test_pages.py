"""The UIs a person opens after a loop run, in a real headless Chromium.

After the loop (the four DAGs run through Airflow on a tiny world), ``reelrank up`` starts
the stack on a copy of its home and each page is asserted on what it renders, with a
screenshot of each: the Airflow DAG list and runs (logged in through the login form), the
registered ranker in the MLflow UI with its ``champion`` alias and model card, the BentoML
Swagger page, the feature views in the Feast UI, the Evidently drift report the monitoring
DAG wrote and the drift project's dashboard in Evidently's UI.

Every wait is for text on the page, bounded, and names the page when it times out. The
expected texts come from the run itself (the registry, the verdict file), not from constants.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from monitoring.drift import DRIFTED_COUNT, VALUE_DRIFT
from reelrank.stack import DAG_IDS
from tests.ui.conftest import PAGE_TIMEOUT_S, WINDOW, Stack, record

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.conftest import Loop

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.slow]

# A full-page screenshot stops here: a report can be many screens tall, and the artifact
# should stay a picture a person can read.
MAX_SHOT_HEIGHT = 2400


def visible_text(driver: WebDriver) -> str:
    """What the page shows (rendered text only: no script, no hidden element)."""
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_until(
    driver: WebDriver,
    page: str,
    shots: Path,
    ready: Callable[[str], bool],
    what: str,
    timeout_s: float = PAGE_TIMEOUT_S,
) -> str:
    """Poll the page's visible text until ``ready`` holds; on timeout, fail naming the page,
    what was awaited and what the page showed instead (with a screenshot of it)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    seen = ""

    def check(d: WebDriver) -> bool:
        nonlocal seen
        try:
            seen = visible_text(d)
        except WebDriverException:  # the page is between two renders
            return False
        return ready(seen)

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.5).until(check)
    except TimeoutException:
        failed = shots / f"{page}-FAILED.png"
        driver.save_screenshot(str(failed))
        pytest.fail(
            f"{page}: {what} not shown within {timeout_s:.0f}s at {driver.current_url} "
            f"(screenshot {failed}); the page showed:\n{seen[:1500]}"
        )
    return seen


def wait_for_text(driver: WebDriver, page: str, shots: Path, *texts: str) -> str:
    """Wait until every one of ``texts`` is visible on the page."""
    return wait_until(
        driver,
        page,
        shots,
        lambda seen: all(t in seen for t in texts),
        "all of " + ", ".join(repr(t) for t in texts),
    )


def screenshot(driver: WebDriver, shots: Path, name: str) -> Path:
    """A full-page PNG (the whole document, up to ``MAX_SHOT_HEIGHT`` pixels tall).

    Chromium's DevTools protocol captures beyond the viewport without resizing the window,
    so the page is not re-laid out for the picture. Single-page apps that scroll inside
    their own panes (Airflow, MLflow) are as tall as the window.
    """
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    width = max(WINDOW[0], int(size["width"]))
    height = min(MAX_SHOT_HEIGHT, max(WINDOW[1], int(size["height"])))
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path = shots / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    record(path)
    return path


# -- Airflow ------------------------------------------------------------------------------------
def airflow_login(driver: WebDriver, stack: Stack, shots: Path) -> None:
    """Sign in through the simple auth manager's form, as a person would."""
    from selenium.webdriver.common.by import By

    user, password = stack.login
    driver.get(f"{stack.url('airflow-api-server')}/dags")
    wait_for_text(driver, "airflow-login", shots, "Sign into Airflow", "Password")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type='submit']").click()


def test_airflow_lists_the_dags_and_their_successful_runs(
    stack: Stack, browser: WebDriver, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    airflow = stack.url("airflow-api-server")
    airflow_login(browser, stack, screenshots)
    # after signing in, the UI goes on to the page it was asked for: the DAG list
    shown = wait_for_text(browser, "airflow-dags", screenshots, *DAG_IDS, "Latest Run")
    assert f"{len(DAG_IDS)} Dags" in shown, shown[:800]
    screenshot(browser, screenshots, "airflow-dags")

    # every DAG of the loop has a successful run: the loop's `airflow dags test` runs, on the
    # same DB (no experiment runs in the loop, so reelrank_experiment has none)
    browser.get(f"{airflow}/dag_runs")
    wait_for_text(browser, "airflow-dag-run-list", screenshots, "Dag Run ID", "Success")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
    for dag_id in (d for d in DAG_IDS if d != "reelrank_experiment"):
        ok = [r for r in rows if dag_id in r and "Success" in r and "dag_test" in r]
        assert ok, f"no successful `dags test` run of {dag_id} in the UI's run list: {rows}"

    # one DAG's page: its grid of task states and its runs
    dag = "reelrank_training"
    browser.get(f"{airflow}/dags/{dag}/runs")
    shown = wait_for_text(browser, "airflow-dag-runs", screenshots, dag, "Success", "dag_test")
    for task in ("retrieval", "train", "gate"):  # the grid names the DAG's tasks
        assert task in shown.split("\n"), f"task {task} missing from the grid of {dag}"
    screenshot(browser, screenshots, "airflow-dag-runs")


# -- MLflow -------------------------------------------------------------------------------------
def registered_model(stack: Stack) -> dict[str, Any]:
    """The ranker as the registry's REST API reports it: what the UI must show."""
    r = httpx.get(
        f"{stack.url('mlflow-ui')}/api/2.0/mlflow/registered-models/get",
        params={"name": stack.settings.ranker_model_name},
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json()["registered_model"])


def close_assistant(driver: WebDriver) -> None:
    """Fold away the MLflow Assistant side panel if it is open (it covers a third of the
    page); the page is the same without it."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            return


def test_mlflow_shows_the_champion_and_its_model_card(
    stack: Stack, browser: WebDriver, screenshots: Path
) -> None:
    name = stack.settings.ranker_model_name
    model = registered_model(stack)
    champion = next(a["version"] for a in model["aliases"] if a["alias"] == "champion")
    mlflow = stack.url("mlflow-ui")
    card_title = "reelrank ranker: model card"  # the first line of training.pipeline.model_card

    browser.get(f"{mlflow}/#/models/{name}")
    shown = wait_for_text(
        browser, "mlflow-model", screenshots, name, f"Version {champion}", "@ champion"
    )
    assert card_title in shown, "the versions table does not show the model card"
    close_assistant(browser)
    wait_until(
        browser,
        "mlflow-model",
        screenshots,
        lambda seen: "Ask a question" not in seen,
        "the page without the assistant panel",
    )
    screenshot(browser, screenshots, "mlflow-model")

    browser.get(f"{mlflow}/#/models/{name}/versions/{champion}")
    shown = wait_for_text(
        browser,
        "mlflow-model-version",
        screenshots,
        f"Version {champion}",
        "@ champion",
        card_title,
        "What it does.",
        "Holdout metrics",
    )
    tags = httpx.get(
        f"{mlflow}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": champion},
        timeout=10,
    ).json()["model_version"]["tags"]
    ndcg = next(t["value"] for t in tags if t["key"] == "ndcg_at_10")
    # the card's metrics table, rendered from the Markdown the registry stores
    assert f"challenger {ndcg}" in shown, f"the card's holdout row (NDCG@10 {ndcg}) not shown"
    screenshot(browser, screenshots, "mlflow-model-version")


# -- BentoML ------------------------------------------------------------------------------------
def test_bentoml_swagger_lists_recommend(
    stack: Stack, browser: WebDriver, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.url('bentoml')}/")
    shown = wait_for_text(
        browser, "bentoml-swagger", screenshots, "Service APIs", "/recommend", "/rank"
    )
    assert "POST\n/recommend" in shown, "Swagger does not list POST /recommend"
    # bring the service's endpoints into view for the picture
    section = browser.find_element(By.XPATH, "//*[normalize-space(text())='Service APIs']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", section)
    screenshot(browser, screenshots, "bentoml-swagger")


# -- Feast --------------------------------------------------------------------------------------
def test_feast_ui_lists_the_feature_views(
    stack: Stack, browser: WebDriver, screenshots: Path
) -> None:
    """``feast ui`` (started by ``up``; it crashed on a missing ``grpc_health`` before) shows
    every feature view the registry holds, with its number of features."""
    from features.store import PROJECT, feature_store

    views = {v.name: len(v.features) for v in feature_store(stack.settings).list_feature_views()}
    assert views, "the loop's Feast registry has no feature view"
    browser.get(f"{stack.url('feast-ui')}/p/{PROJECT}/feature-view")
    shown = wait_for_text(browser, "feast-feature-views", screenshots, "Feature Views", *views)
    lines = shown.split("\n")
    for name, n in views.items():  # the table's row: the name, then its number of features
        assert lines[lines.index(name) + 1] == str(n), f"{name}: {n} features not shown"
    assert f"Feature Views ({len(views)})" in shown, "the side bar's count is not the registry's"
    screenshot(browser, screenshots, "feast-feature-views")


# -- Evidently ----------------------------------------------------------------------------------
def drift_dir(loop: Loop) -> Path:
    """Where the monitoring DAG wrote the last day's check (monitoring.pipeline)."""
    return loop.settings.reports_dir / "drift" / loop.settings.sim.end_date.isoformat()


def test_evidently_drift_report_renders_its_drift_table(
    loop: Loop, browser: WebDriver, screenshots: Path
) -> None:
    report = drift_dir(loop) / "drift_report.html"
    assert report.exists(), f"the monitoring DAG wrote no report at {report}"
    # what the report must show, from Evidently's own JSON of the same run
    metrics = json.loads((drift_dir(loop) / "drift_report.json").read_text())["metrics"]
    per_column = [m for m in metrics if m["config"]["type"] == VALUE_DRIFT]
    count = next(m["value"]["count"] for m in metrics if m["config"]["type"] == DRIFTED_COUNT)
    # the table is sorted by drift score: the top column is on its first page
    top = max(per_column, key=lambda m: m["value"])["config"]
    browser.get(report.as_uri())
    # these words exist only once the report's JavaScript has drawn its widgets: the file
    # itself is a script bundle and a JSON payload, with no visible table
    shown = wait_for_text(
        browser,
        "evidently-drift",
        screenshots,
        "Dataset Drift",
        "Data Drift Summary",
        "Drift Score",
        "Stat Test",
        top["column"],
    )
    assert f"({int(count)} out of {len(per_column)})" in shown, shown[:800]
    assert top["method"] in shown, f"stat test {top['method']} of {top['column']} not shown"
    screenshot(browser, screenshots, "evidently-drift")


def test_evidently_ui_shows_the_drift_project_dashboard(
    loop: Loop, stack: Stack, browser: WebDriver, screenshots: Path
) -> None:
    """``evidently ui`` (started by ``up`` on the workspace the monitoring DAG wrote) shows
    the ``reelrank drift`` project's dashboard: the verdict's drift share, the panels over
    time, and the day's runs in its report list."""
    from monitoring.workspace import PROJECT_NAME

    verdict = json.loads((drift_dir(loop) / "verdict.json").read_text())
    project_id = verdict["tags"]["dashboard"].rsplit("/", 1)[1]  # the alert's link
    page = f"{stack.url('evidently-ui')}/projects/{project_id}"
    browser.get(page)
    shown = wait_for_text(
        browser,
        "evidently-dashboard",
        screenshots,
        PROJECT_NAME,
        "Drift share, last check",
        "Share of drifted columns per day",
        "Drift score per column",
        "Content mix: caption-cluster drift",
        "Online quality of the served lists",
    )
    share = verdict["share_drifted"]
    assert f"{share:.2f}" in shown or f"{share:.2g}" in shown, f"drift share {share} not shown"
    screenshot(browser, screenshots, "evidently-dashboard")

    browser.get(f"{page}/reports")
    day = loop.settings.sim.end_date.isoformat()
    wait_for_text(browser, "evidently-runs", screenshots, f"{day} data-drift")
