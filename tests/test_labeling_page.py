"""Issue 12 parts 1-2: the labeling page in a real browser (headless Chromium driven by Selenium).

A two-annotator round is queried; alice opens her page straight from disk (file://, no server), labels three
cards with the keyboard (one with a note) and one with the mouse, marks one unsure and skips one, enlarges a
patch; the page reloads with nothing lost; "Download labels" saves the CSV, which `aift teach` accepts unchanged
and records in the ledger (the unsure and skipped candidates stay in the pool). The page makes no network
request (only file:// resources load).

Needs Debian's `chromium` + `chromium-driver` and the `selenium` package (.ci/run installs them). Skipped
only when they are absent AND the environment variable CI is unset: under CI a missing browser fails.
With AIFT_DOCS_SCREENSHOTS=1 the screenshots are also copied to docs/ (labeling-page.png, labeling-zoom.png).
"""

import csv
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from aift_tf.store import open_store
from test_aift_cli import CLASSES, ROOT, aift, base, ledger, project  # noqa: F401


def _browser():
    chromium = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                    None)
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        selenium_ok = False
    else:
        selenium_ok = True
    missing = [what for what, ok in (("chromium", chromium), ("chromedriver", driver), ("selenium", selenium_ok))
               if not ok]
    if missing:
        msg = (f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; pip install "
               f"selenium)")
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {msg}")
        pytest.skip(msg)
    return chromium, driver


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    drv.downloads = downloads
    yield drv
    drv.quit()


def _wait(cond, timeout=15.0, what="condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _text(drv, element_id):
    """The element's text, or None while the (re)loading document does not have it yet."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return drv.find_element(By.ID, element_id).text
    except WebDriverException:
        return None


def _shot(drv, path, docs_name):
    drv.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    if os.environ.get("AIFT_DOCS_SCREENSHOTS") == "1":
        shutil.copy(path, Path(ROOT) / "docs" / docs_name)


def test_label_in_the_browser_reload_download_and_teach(project, base, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv = browser
    r = aift("query", project, "-n", 10, "--annotators", "alice,bob", "--overlap", "0.2", "--force", "--quiet")
    assert r.exit_code == 0, r.stderr
    rnd = project / "round-002"
    share = json.loads((rnd / "query.json").read_text())["annotators"]["alice"]
    page = rnd / "gallery-alice.html"
    drv.get_log("performance")  # drop the browser's own start-up requests (its new-tab page)
    drv.get(page.as_uri())
    body = drv.find_element(By.TAG_NAME, "body")
    cards = drv.find_elements(By.CSS_SELECTOR, ".card")
    assert [int(c.get_attribute("data-id")) for c in cards] == share and len(share) >= 6
    progress = drv.find_element(By.ID, "progress")
    assert progress.text == f"0 of {len(share)} labeled · 0 unsure · 0 skipped · {len(share)} left"
    assert drv.find_element(By.ID, "annotator").get_attribute("value") == "alice"
    # every image loaded from disk
    assert all(drv.execute_script("return arguments[0].naturalWidth", img) > 0
               for img in drv.find_elements(By.CSS_SELECTOR, "img.bag"))

    # keyboard: card 1 -> class 2 (positive), card 2 -> class 1 (negative), card 3 unsure, card 4: a note, then 1
    body.send_keys("2")
    body.send_keys("1")
    body.send_keys("u")
    body.send_keys("n")
    note = cards[3].find_element(By.CSS_SELECTOR, ".note")
    assert drv.switch_to.active_element == note
    note.send_keys('small blob, "check" with Dr. Lee')
    note.send_keys(Keys.ESCAPE)
    body.send_keys("1")
    # mouse: skip card 5, label card 6 positive
    cards[4].find_element(By.CSS_SELECTOR, "button.skip").click()
    cards[5].find_element(By.CSS_SELECTOR, 'button.lab[data-label="1"]').click()
    expected = {share[0]: 1, share[1]: 0, share[3]: 0, share[5]: 1}
    left = len(share) - 6
    assert progress.text == f"4 of {len(share)} labeled · 1 unsure · 1 skipped · {left} left"
    assert cards[0].find_element(By.CSS_SELECTOR, ".status").text == "positive"
    assert cards[2].find_element(By.CSS_SELECTOR, ".status").text == "unsure"
    drv.execute_script("window.scrollTo(0, 0)")
    _shot(drv, tmp_path / "page.png", "labeling-page.png")

    # enlarge the 2nd patch of card 1 (a click on it), step to the 3rd with the arrow key, close with Esc
    img = cards[0].find_element(By.CSS_SELECTOR, "img.bag")
    boxes = [list(map(int, b.split(","))) for b in img.get_attribute("data-boxes").split(";")]
    scale = drv.execute_script("return arguments[0].clientWidth / arguments[0].naturalWidth", img)
    from selenium.webdriver.common.action_chains import ActionChains

    w = drv.execute_script("return arguments[0].clientWidth", img)
    h = drv.execute_script("return arguments[0].clientHeight", img)
    x = (boxes[1][0] + boxes[1][2] / 2) * scale - w / 2
    y = (boxes[1][1] + boxes[1][3] / 2) * scale - h / 2
    ActionChains(drv).move_to_element_with_offset(img, int(x), int(y)).click().perform()
    zoom = drv.find_element(By.ID, "zoom")
    assert zoom.is_displayed()
    assert f"id {share[0]} · patch 2 of {len(boxes)}" in drv.find_element(By.ID, "zcap").text
    canvas = drv.find_element(By.ID, "zcanvas")
    assert int(canvas.get_attribute("width")) >= 2 * boxes[1][2]
    _shot(drv, tmp_path / "zoom.png", "labeling-zoom.png")
    body.send_keys(Keys.ARROW_RIGHT)
    assert "patch 3 of" in drv.find_element(By.ID, "zcap").text
    body.send_keys(Keys.ESCAPE)
    assert not zoom.is_displayed()

    # reload: nothing lost
    drv.refresh()
    # the restored state is read once the reloaded page's script has run: wait for it rather than read the
    # first text the new document has (a loaded CI machine flaked here once); on a timeout, say what the
    # page's storage held, so a lost label and a slow page read differently
    restored = f"4 of {len(share)} labeled · 1 unsure · 1 skipped · {left} left"
    try:
        _wait(lambda: _text(drv, "progress") == restored, what="the reloaded page's progress")
    except AssertionError as e:
        raise AssertionError(f"{e}: progress {_text(drv, 'progress')!r}, localStorage "
                             f"{drv.execute_script('return JSON.stringify(window.localStorage)')!r}") from None
    body = drv.find_element(By.TAG_NAME, "body")
    cards = drv.find_elements(By.CSS_SELECTOR, ".card")
    assert cards[3].find_element(By.CSS_SELECTOR, ".note").get_attribute("value") == 'small blob, "check" with Dr. Lee'
    assert cards[5].find_element(By.CSS_SELECTOR, 'button.lab[data-label="1"]').get_attribute("aria-pressed") == "true"

    # no network request: every request the page made (Chrome's network log) is a file:// one
    urls = [m["params"]["request"]["url"] for m in (json.loads(e["message"])["message"] for e in
                                                     drv.get_log("performance"))
            if m.get("method") == "Network.requestWillBeSent"]
    assert any(u.endswith(".png") for u in urls) and all(u.startswith(("file://", "blob:", "data:")) for u in urls), urls

    # download, then teach it unchanged
    drv.find_element(By.ID, "download").click()
    csv_path = _wait(lambda: next((p for p in drv.downloads.iterdir() if p.suffix == ".csv"), None),
                     what="the downloaded CSV")
    assert csv_path.name == "round-002-alice-labels.csv"
    _wait(lambda: not list(drv.downloads.glob("*.crdownload")), what="the download to finish")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "label", "note", "annotator"]
    assert [int(x["id"]) for x in rows] == share and {x["annotator"] for x in rows} == {"alice"}
    assert {int(x["id"]): int(x["label"]) for x in rows if x["label"]} == expected
    assert rows[3]["note"] == 'small blob, "check" with Dr. Lee'

    r = aift("teach", project, csv_path)
    assert r.exit_code == 0, (r.output, r.stderr)
    assert f"{len(share) - 4} row(s) with an empty label skipped" in r.stderr  # unsure + skipped + untouched
    led = ledger(project)
    assert {e["id"]: e["label"] for e in led} == expected
    assert {e["annotator"] for e in led} == {"alice"} and {e["query_round"] for e in led} == {2}
    assert [e["note"] for e in led if e["id"] == share[3]] == ['small blob, "check" with Dr. Lee']
    with open_store(base["store"]) as s:
        assert all(0 <= e["label"] < len(CLASSES) and e["class"] == CLASSES[e["label"]] for e in led)
        assert set(expected) <= set(s.ids("train").tolist())
    out = aift("status", project).output
    assert "round-002: 10 queried, 4 labeled (alice, bob; 2 shared)" in out


def test_patch_boxes_match_the_montages():
    """The page enlarges patch j by cropping box j of the montage: the boxes must tile the montage exactly,
    and a 2.5-D patch's box is its whole row of three planes."""
    import numpy as np

    from aift_tf.gallery import montage, montage_boxes, montage_planes

    rng = np.random.default_rng(0)
    bag = rng.integers(0, 256, size=(4, 16, 20, 3), dtype=np.uint8)
    img = montage(bag)
    boxes = montage_boxes(4, 16, 20)
    for j, (x, y, w, h) in enumerate(boxes):
        tile = img[y:y + h, x:x + w]
        assert (tile[::h // 16, ::w // 20] == bag[j]).all()
    assert boxes[-1][0] + boxes[-1][2] == img.shape[1]
    img = montage_planes(bag, ["axial", "coronal", "sagittal"])
    boxes = montage_boxes(4, 16, 20, planes=["axial", "coronal", "sagittal"])
    for j, (x, y, w, h) in enumerate(boxes):
        row = img[y:y + h, x:x + w]
        s = h // 16
        for c in range(3):  # the three planes side by side, grayscale
            plane = row[:, c * (20 * s + 2): c * (20 * s + 2) + 20 * s]
            assert (plane[::s, ::s, 0] == bag[j, :, :, c]).all()
    assert boxes[-1][1] + boxes[-1][3] + 2 == img.shape[0] and boxes[0][0] + boxes[0][2] + 2 == img.shape[1]


def test_five_class_page_keys_one_to_k_and_buttons(browser, tmp_path):
    """Issue 23: a K = 5 store's page has one button per class; keys 1..5 label classes 0..4, key 6 does nothing,
    a click labels; the downloaded CSV is taught unchanged with the class names in the ledger."""
    from selenium.webdriver.common.by import By

    from aift_tf.store import write_store
    from conftest import make_multiclass_arrays

    names = ["grade_0", "grade_1", "grade_2", "grade_3", "grade_4"]
    a = make_multiclass_arrays(n=60, seed=1, groups=10)
    store, proj = tmp_path / "grades.h5", tmp_path / "proj"
    write_store(store, a["patches"], a["labels"], a["groups"], a["split"], app="grades", class_names=names)
    r = aift("init", proj, "--data", store, "--epochs", 1, "--batch-size", 32, "--seed", 0, "--quiet")
    assert r.exit_code == 0, r.stderr
    r = aift("query", proj, "-n", 8, "--quiet")
    assert r.exit_code == 0, r.stderr
    drv = browser
    drv.get((proj / "round-001" / "gallery.html").as_uri())
    body = drv.find_element(By.TAG_NAME, "body")
    cards = drv.find_elements(By.CSS_SELECTOR, ".card")
    ids = [int(c.get_attribute("data-id")) for c in cards]
    assert len(ids) == 8
    for c in cards:
        got = [(b.get_attribute("data-label"), b.text) for b in c.find_elements(By.CSS_SELECTOR, "button.lab")]
        assert got == [(str(k), f"{k + 1} · {n}") for k, n in enumerate(names)], got
    for key in "12345":
        body.send_keys(key)
    body.send_keys("6")  # no sixth class: nothing happens, the sixth card stays unlabeled
    progress = drv.find_element(By.ID, "progress")
    assert progress.text.startswith("5 of 8 labeled"), progress.text
    assert [c.find_element(By.CSS_SELECTOR, ".status").text for c in cards[:5]] == names
    assert cards[5].find_element(By.CSS_SELECTOR, ".status").text == ""
    cards[6].find_element(By.CSS_SELECTOR, 'button.lab[data-label="3"]').click()
    assert cards[6].find_element(By.CSS_SELECTOR, ".status").text == "grade_3"
    expected = {ids[k]: k for k in range(5)}
    expected[ids[6]] = 3

    drv.find_element(By.ID, "download").click()
    csv_path = _wait(lambda: next((p for p in drv.downloads.iterdir() if p.suffix == ".csv"), None),
                     what="the downloaded CSV")
    _wait(lambda: not list(drv.downloads.glob("*.crdownload")), what="the download to finish")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {int(x["id"]): int(x["label"]) for x in rows if x["label"]} == expected
    r = aift("teach", proj, csv_path, "--quiet")
    assert r.exit_code == 0, (r.output, r.stderr)
    led = ledger(proj)
    assert {e["id"]: e["label"] for e in led} == expected
    assert all(e["class"] == names[e["label"]] for e in led)
    # every class labeled: the round fine-tuned a 5-way head
    assert (proj / "checkpoints" / "round-001" / "state.json").is_file()
