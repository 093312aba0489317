"""The HTML check report: self-contained, small, and drawn by a real browser without console errors."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

import assay
from assay.checks import infer_suite, run_suite
from assay.report import check_report_html
from tests.conftest import write_images

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def _opened(path: Path, width: int, height: int) -> Iterator[tuple[Any, list[str]]]:
    """``path`` loaded in headless Chromium: the page, and the console errors it reports."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS,
                                    ignore_default_args=["--enable-automation"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        yield page, errors
        browser.close()


def _wide_table(n: int, shift: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {"id": np.arange(n)}
    for i in range(40):
        cols[f"x{i}"] = rng.normal(shift * (i % 2), 1, n)
    for i in range(9):
        p = [0.6, 0.3, 0.1] if shift == 0 else [0.2, 0.3, 0.5]
        cols[f"c{i}"] = pa.array(rng.choice(["red", "green", "blue"], n, p=p))
    return pa.table(cols)


def _report(repo: assay.Repo) -> tuple[str, assay.CheckResult]:
    repo.add("wide", _wide_table(4000, 0.0, 1), key="id")
    repo.commit("good")
    suite = infer_suite(repo.dataset("wide", "HEAD"), reference="HEAD")
    repo.add("wide", _wide_table(4000, 1.0, 2))
    result = run_suite(repo.dataset("wide"), suite, reference=lambda r: repo.dataset("wide", r))
    return check_report_html(result), result


def test_report_is_self_contained_and_small(repo: assay.Repo) -> None:
    page, result = _report(repo)
    assert len(result.results) > 150
    assert len(page.encode()) < 1_000_000
    assert not re.search(r"""(src|href)=["']?https?:""", page) and "<script" not in page
    drift = [r for r in result.results if r.expectation.kind == "distribution"]
    assert len(drift) == 49 and page.count("<svg") == 49  # 40 numbers, 9 categories; the key has none
    assert not result.ok or result.warnings  # the shifted columns drift
    assert sum(not r.success for r in drift) >= 20 + 9


def test_report_renders_in_headless_chromium(repo: assay.Repo, tmp_path: Path) -> None:
    page_html, _ = _report(repo)
    path = tmp_path / "report.html"
    path.write_text(page_html, encoding="utf-8")
    shot = tmp_path / "report.png"
    with _opened(path, 1300, 900) as (page, errors):
        assert page.locator("svg").count() == 49  # one chart per column but the key
        page.locator("svg").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shot), full_page=True)
    assert errors == []
    image = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    blue = np.all(np.abs(image - [0x09, 0x69, 0xDA]) < 12, axis=1).sum()
    amber = np.all(np.abs(image - [0xBF, 0x87, 0x00]) < 12, axis=1).sum()
    assert blue > 2000 and amber > 2000  # both series of the charts are drawn


def test_ingest_report_shows_thumbnails_of_flagged_images_in_headless_chromium(repo: assay.Repo,
                                                                               tmp_path: Path) -> None:
    from assay.gate import ingest, parse_policy
    from assay.report import ingest_report_html

    write_images(tmp_path / "first", {"dark": 0, "light": 200}, 25, size=32)
    policy = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    assert ingest(repo, tmp_path / "first", into="images", policy=policy).ok
    for i in range(3):  # copies of light images: quarantined
        (tmp_path / "second" / "light").mkdir(parents=True, exist_ok=True)
        (tmp_path / "second" / "light" / f"copy{i}.png").write_bytes((tmp_path / "first" / "light" / f"{i}.png")
                                                                      .read_bytes())
    report = ingest(repo, tmp_path / "second", into="images", policy=policy)
    path = tmp_path / "ingest.html"
    path.write_text(ingest_report_html(report, repo.store.get), encoding="utf-8")
    assert "<script" not in path.read_text() and not re.search(r"""(src|href)=["']?https?:""", path.read_text())
    shot = tmp_path / "ingest.png"
    with _opened(path, 1000, 700) as (page, errors):
        images = page.locator(".card img")
        assert images.count() == 3
        widths = [images.nth(i).evaluate("img => img.naturalWidth") for i in range(3)]
        box = images.first.bounding_box()
        page.screenshot(path=str(shot))
    assert errors == [] and all(w > 0 for w in widths) and box is not None
    pixels = np.asarray(Image.open(shot).convert("L")).astype(int)
    top, left = int(box["y"]) + 2, int(box["x"]) + 2
    inside = pixels[top:int(box["y"] + box["height"]) - 2, left:int(box["x"] + box["width"]) - 2]
    assert inside.size > 1000 and inside.std() > 5  # the thumbnail's noisy pixels are drawn, not a blank box


def test_report_without_a_reference_charts_every_column_in_headless_chromium(repo: assay.Repo,
                                                                               tmp_path: Path) -> None:
    table = _wide_table(3000, 0.0, 3).select(["id", "x0", "x1", "c0"])
    repo.add("plain", table, key="id")
    repo.commit("plain")
    suite = infer_suite(repo.dataset("plain", "HEAD"))  # no reference: no distribution expectation
    assert not any(e.kind == "distribution" for e in suite.expectations)
    result = run_suite(repo.dataset("plain"), suite, profile=True)
    assert set(result.profiles) == {"x0", "x1", "c0"}  # the key (every value distinct) has no chart
    assert sum(result.profiles["x0"]["current"]) == 3000
    assert sorted(result.profiles["c0"]["categories"]) == ["blue", "green", "red"]
    path = tmp_path / "plain.html"
    path.write_text(check_report_html(result), encoding="utf-8")
    shot = tmp_path / "plain.png"
    with _opened(path, 1300, 900) as (page, errors):
        assert page.locator("svg").count() == 3
        assert "reference" not in page.locator(".legend").inner_text()
        page.screenshot(path=str(shot), full_page=True)
    assert errors == []
    image = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert np.all(np.abs(image - [0x09, 0x69, 0xDA]) < 12, axis=1).sum() > 2000  # the bars are drawn
    assert check_report_html(run_suite(repo.dataset("plain"), suite)).count("<svg") == 0  # profiles asked for


def test_ingest_report_reads_as_words_and_scales_small_images_up(repo: assay.Repo, tmp_path: Path) -> None:
    from assay.gate import ingest, parse_policy
    from assay.report import ingest_report_html

    write_images(tmp_path / "first", {"dark": 0, "light": 200}, 25, size=8)  # 8x8, as scikit-learn's digits
    policy = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n"
                          "  outlier: {action: warn}\n")
    assert ingest(repo, tmp_path / "first", into="digits", policy=policy).ok
    (tmp_path / "second" / "light").mkdir(parents=True)
    for i in range(2):
        (tmp_path / "second" / "light" / f"copy{i}.png").write_bytes(
            (tmp_path / "first" / "light" / f"{i}.png").read_bytes())
    report = ingest(repo, tmp_path / "second", into="digits", policy=policy)
    page_html = ingest_report_html(report, repo.store.get)
    assert not re.search(r"\d\.\d{5,}", page_html)  # figures rounded, not 0.8878821134567261
    assert "batch_flagged" not in page_html and "quarantine it" in page_html and "0 bad, 1 fine" in page_html
    assert "quarantine/digits" in page_html  # where the held-back samples are
    path = tmp_path / "ingest.html"
    path.write_text(page_html, encoding="utf-8")
    with _opened(path, 1000, 700) as (page, errors):
        row = page.locator("tr", has_text="duplicate").first.locator("td")
        in_batch = int(row.nth(2).inner_text())
        assert in_batch == len(report.quarantined) == 2  # the table's count is the cards' count
        assert page.locator(".card img").count() == 2
        natural = page.locator(".card img").first.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert errors == [] and natural == [96, 96]  # scaled up by whole pixels in the image itself
