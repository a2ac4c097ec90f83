"""The run browser (issue 27, report/site.py) in headless Chromium, on a store of a study's runs,
a reproduction (seed 004) and a failed run, all written through the store API without training
(as tests/test_reproduction_render.py does): sorting and filtering change the rows, the default
hides the config keys that do not vary, picking two runs opens their comparison, every image and
plot renders, nothing is fetched from off the disk, the console stays clean. A screenshot of each
page lands in /tmp/site-shots/."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from helpers import finished_run

from practicum import reproduce, sweeps
from practicum.config import load_experiment
from practicum.reproduce import load_reproduction
from practicum.store import Index

SHOTS = Path("/tmp/site-shots")
GRID = {"optim.lr": [0.01, 0.1, 1.0], "optim.weight_decay": [0.0, 1e-4, 1e-3], "optim.batch_size": [64, 128]}
SEEDS = 2
POINTS = 3 * 3 * 2
STUDY_RUNS = POINTS * SEEDS


def accuracy(cfg) -> float:
    return 0.7 + 0.05 * GRID["optim.lr"].index(cfg.optim.lr) - 10 * (cfg.optim.weight_decay or 0) + 0.002 * cfg.seed


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """runs/ with the study 'study-site' (18 points x 2 seeds, fmnist-softmax), reproduction 004
    (its 7 runs and its report, from `practicum reproduce 004`, which refreshes the site), a failed
    run and one run with its report.html. Returns (home, site folder)."""
    from test_reproduction_render import write_runs

    from practicum.cli import main
    from practicum.report import write_run_report

    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("site") / "runs"
    mp.setenv("PRACTICUM_HOME", str(home))
    mp.delenv("PRACTICUM_INDEX", raising=False)
    mp.setenv("PRACTICUM_OFFLINE", "1")

    def no_training(cfg, **_):
        raise AssertionError(f"the test would train {cfg.name}")

    mp.setattr("practicum.execute.run_experiment", no_training)
    index = Index()
    plan = sweeps.plan("fmnist-softmax", GRID, SEEDS, name="study-site")
    for t in plan.trials:
        cfg = load_experiment("fmnist-softmax", t.overrides, seed=t.seed)
        final = accuracy(cfg)
        finished_run(index, cfg, {"test/accuracy": final, "test/loss": 1 - final},
                     {"train/loss": [2.0, 1.0, 0.6], "test/accuracy": [0.3, 0.6, final]})
    sweeps.save_study_record(plan)
    write_runs(reproduce.plan("004", index=index), load_reproduction("004"), "004", index)
    failed = finished_run(index, load_experiment("fmnist-mlp", seed=7), {"test/accuracy": 0.1})
    index.set_status(failed.id, "failed", error="diverged at step 3")
    write_run_report(index.list("fmnist-softmax")[0])
    index.close()
    assert main(["reproduce", "004"]) == 0  # ... which refreshes the site, as every run and sweep does
    assert (home / "site" / "index.html").is_file() and (home / "site" / "vendor" / "plotly.min.js").is_file()
    yield home, home / "site"
    mp.undo()


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("headless Chromium is not installed (Debian: chromium, chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # as tests/test_reproduce.py's, plus software WebGL (parallel coordinates draw with it; a
    # student's browser has a GPU, headless Chromium here has none)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def open_page(driver, url: str, wait_for: str = "#main > *"):
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get_log("browser")
    driver.get(url)
    wait(driver, wait_for)


def wait(driver, wait_for: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline and not driver.execute_script(f"return !!document.querySelector('{wait_for}')"):
        time.sleep(0.1)
    time.sleep(0.3)


def page_health(driver) -> dict:
    """What a page asked for and logged since it opened, and whether its images and plots drew."""
    requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 40)]);")
    plots = driver.execute_script("""return Array.from(document.querySelectorAll('.plot')).map(d => [
        d.classList.contains('js-plotly-plot'), d.querySelectorAll('.main-svg').length,
        d.querySelectorAll('canvas').length, (d.data || []).length]);""")
    return {"urls": urls, "errors": errors, "images": images, "plots": plots}


def assert_healthy(driver, shot: str) -> dict:
    health = page_health(driver)
    assert health["urls"] and all(u.startswith(("file://", "data:")) for u in health["urls"]), health["urls"]
    assert not health["errors"], health["errors"]
    assert all(done and width > 0 for done, width, _ in health["images"]), health["images"]
    assert all(is_plot and svgs and traces for is_plot, svgs, _, traces in health["plots"]), health["plots"]
    SHOTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(height + 40, 5000))
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))
    driver.set_window_size(1400, 1000)
    return health


def rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#runs tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent));")


def headers(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('#runs thead th')).map(t => t.textContent);")


def choose(driver, name: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, f"filter-{name}")).select_by_value(value)


def click_header(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    next(th for th in driver.find_elements(By.CSS_SELECTOR, "#runs thead th") if th.text.startswith(label)).click()


def test_runs_page_sorts_filters_and_shows_the_keys_that_vary(store, browser):
    from selenium.webdriver.common.by import By

    home, site = store
    total = len(Index(home).list())
    open_page(browser, (site / "index.html").as_uri(), "#runs")
    assert_healthy(browser, "runs")
    assert len(rows(browser)) == total == STUDY_RUNS + 7 + 1

    choose(browser, "experiment", "fmnist-softmax")  # the study's runs: only what the grid and seeds vary
    assert len(rows(browser)) == STUDY_RUNS
    shown = headers(browser)
    assert {"seed", "optim.lr", "optim.weight_decay", "optim.batch_size"} == set(shown[shown.index("tags") + 1:])
    assert "optim.name" not in shown and "data.name" not in shown  # constant among them: hidden
    browser.find_element(By.ID, "all-keys").click()
    assert {"optim.name", "data.name", "optim.lr"} <= set(headers(browser))
    browser.find_element(By.ID, "all-keys").click()

    click_header(browser, "headline")  # sorts by the headline metric's value; again: the other way
    first = [float(r[6].split()[-1]) for r in rows(browser)]
    click_header(browser, "headline")
    second = [float(r[6].split()[-1]) for r in rows(browser)]
    assert first == sorted(first, reverse=True) and second == sorted(second) and first != second

    choose(browser, "experiment", "")
    choose(browser, "status", "failed")
    (row,) = rows(browser)
    assert "fmnist-mlp" in row and "failed" in row
    choose(browser, "status", "")
    choose(browser, "tag", "study-site")
    assert len(rows(browser)) == STUDY_RUNS
    choose(browser, "tag", "")
    choose(browser, "seed-report", "004")
    assert {r[2] for r in rows(browser)} == {"lab-fc", "lab-lenet", "lab-resnet18"}
    choose(browser, "seed-report", "")
    some = Index(home).list("lab-lenet")[0].id
    browser.find_element(By.ID, "search").send_keys(some[-6:])
    assert [r[1] for r in rows(browser)] == [some]

    from selenium.webdriver.common.keys import Keys

    browser.find_element(By.ID, "search").send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)  # all rows again
    # every row links to its report (or, without one, to its data in the comparison view)
    links = browser.execute_script("return Array.from(document.querySelectorAll('#runs tbody tr td:nth-child(2) a'))"
                                   ".map(a => a.href);")
    assert len(links) == total and any(u.endswith("/report.html") for u in links)
    assert all(Path(u.removeprefix("file://").split("#")[0]).is_file() for u in links)


def test_picking_two_runs_opens_their_comparison(store, browser):
    from selenium.webdriver.common.by import By

    home, site = store
    open_page(browser, (site / "index.html").as_uri(), "#runs")
    choose(browser, "experiment", "fmnist-softmax")
    click_header(browser, "run")
    picks = browser.find_elements(By.CSS_SELECTOR, "#runs input.pick")
    a, b = picks[0].get_attribute("data-id"), picks[1].get_attribute("data-id")
    assert browser.find_element(By.ID, "compare").get_attribute("disabled")
    picks[0].click()
    picks[1].click()
    browser.get_log("performance")  # what the comparison page asks for, from here on
    browser.get_log("browser")
    browser.find_element(By.ID, "compare").click()
    wait(browser, "pre.diff")
    assert browser.current_url.endswith(f"compare.html#{a},{b}")
    health = assert_healthy(browser, "compare")
    assert len(health["plots"]) >= 2  # train loss, test accuracy: the curves overlaid
    first_table = browser.find_element(By.CSS_SELECTOR, "main table")
    keys = [r.text.split()[0] for r in first_table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    configs = [next(r for r in Index(home).list("fmnist-softmax") if r.id == x) for x in (a, b)]
    from practicum.report.compare import differing, settings

    assert keys == [k for k in differing([settings(Path(r.dir)) for r in configs]) if k not in ("name", "task")]
    diff = browser.find_element(By.CSS_SELECTOR, "pre.diff").text
    assert diff.startswith(f"--- {a}/config.toml\n+++ {b}/config.toml\n@@ ")


def test_study_and_reproduction_pages_render_their_plots_and_scores(store, browser):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By

    home, site = store
    open_page(browser, (site / "studies.html").as_uri(), "table")
    assert_healthy(browser, "studies")
    assert "study-site" in browser.find_element(By.TAG_NAME, "table").text

    open_page(browser, (site / "studies" / "study-site.html").as_uri(), ".parcoords .main-svg")
    health = assert_healthy(browser, "study")
    assert len(health["plots"]) == 3 + 1  # test accuracy against each of the 3 axes, and the parallel coordinates
    types = browser.execute_script("return Array.from(document.querySelectorAll('.plot')).map(d => "
                                   "[d.layout.xaxis ? d.layout.xaxis.type : 'parcoords', d.data[0].error_y ? 1 : 0]);")
    assert types[:3] == [["log", 1], ["category", 1], ["linear", 1]]  # lr spans decades; weight decay has a 0
    # mean ± std per point: the error bars are the sample std over the seeds
    ys = browser.execute_script("return document.querySelector('.plot').data.map(t => [t.y, t.error_y.array]);")
    assert all(abs(s - 0.002 / 2 ** 0.5) < 1e-9 for _, stds in ys for s in stds)
    # drag along the first axis of the parallel coordinates: a range filters the lines
    brush = browser.find_elements(By.CSS_SELECTOR, ".parcoords .axis-brush .background")[0]
    ActionChains(browser).move_to_element_with_offset(brush, 0, -40).click_and_hold().move_by_offset(0, 60) \
        .release().perform()
    time.sleep(0.5)
    assert browser.execute_script("return document.querySelector('.parcoords').data[0].dimensions[0].constraintrange")

    open_page(browser, (site / "reproductions.html").as_uri(), "table")
    assert_healthy(browser, "reproductions")
    (row,) = browser.execute_script("return Array.from(document.querySelectorAll('tbody tr')).map(r => "
                                    "Array.from(r.cells).map(c => c.textContent));")
    text = (home / "reproductions" / "004" / "report.md").read_text()
    results = text.split("\n## Results\n")[1].split("\n## ")[0]
    n = len([line for line in results.splitlines() if re.match(r"\| §\d", line)])  # its rows, not its header
    assert row[0] == "004" and re.fullmatch(rf"\d+ of {n}", row[2]), row
    holds = text.split("\n## Claims\n")[1].split("\n## ")[0].count("| holds |")
    assert int(row[3]) == holds
    report = browser.find_element(By.CSS_SELECTOR, "tbody a").get_attribute("href")
    assert report.endswith("reproductions/004/report.html") and Path(report.removeprefix("file://")).is_file()


def test_the_site_is_rebuilt_incrementally(store):
    from practicum.report.site import build

    home, site = store
    data = sorted((site / "data" / "run").glob("*.js"))
    before = {p: p.stat().st_mtime_ns for p in data}
    build()
    assert {p: p.stat().st_mtime_ns for p in data} == before  # nothing changed: no run's file is written again
    assert len(data) == len(Index(home).list())


def test_a_reproduction_and_a_study_export_as_booktabs_tables(store, tmp_path):
    from practicum.export import export

    home, _ = store
    paths = export("004", "latex", tmp_path)
    assert [p.name for p in paths] == ["reproduction-004.results.tex", "reproduction-004.claims.tex"]
    results = paths[0].read_text()
    assert "\\toprule" in results and "\\midrule" in results and "\\bottomrule" in results
    assert "\\S{}" in results and "$\\pm$" in results  # '§1' and 'mean ± std' set for LaTeX
    (study,) = export("study-site", "latex", tmp_path)
    lines = study.read_text().splitlines()
    body = lines[lines.index("\\midrule") + 1:lines.index("\\bottomrule")]
    assert len(body) == POINTS and all(r" $\pm$ " in line and line.endswith(" (2) \\\\") for line in body)
