"""Measures the site: build time, and the weight and first contentful paint of a page in headless Chromium.

    python -m site_src.measure                      # build into a temporary folder, then measure the MHA page
    python -m site_src.measure --site site --runs 9 # measure an existing build

Each load is a fresh browser context (cold cache). Sizes are as served by Python's http.server (no compression);
the gzip figure is what a compressing server would send for the HTML.
"""
from __future__ import annotations

import argparse
import gzip
import statistics
import time
from pathlib import Path

from site_src.testing import SiteServer, build_site

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

METRICS = """() => {
  const navigation = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource');
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {total: navigation.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
          requests: resources.length + 1, fcp: paint ? paint.startTime : null};
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, help="an existing build (default: build one, timing it)")
    parser.add_argument("--page", default="transformers/mha/", help="page to load, from the site root")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    if args.site is None:
        start = time.perf_counter()
        site = build_site().path
        print(f"build (mkdocs build --strict, subprocess): {time.perf_counter() - start:.1f} s")
    else:
        site = args.site
    html = (site / args.page / "index.html").read_bytes()
    print(f"{args.page}: HTML {len(html) / 1024:.1f} KiB, gzip -6 {len(gzip.compress(html, 6)) / 1024:.1f} KiB")

    from playwright.sync_api import sync_playwright

    server = SiteServer(site)
    results = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for _ in range(args.runs):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                page.goto(server.url + args.page, wait_until="networkidle")
                results.append(page.evaluate(METRICS))
                context.close()
            browser.close()
    finally:
        server.close()
    fcp = statistics.median(r["fcp"] for r in results)
    total = statistics.median(r["total"] for r in results)
    print(f"transferred (all requests, uncompressed): {total / 1024:.1f} KiB in {results[0]['requests']} requests")
    print(f"first contentful paint: median {fcp:.0f} ms over {args.runs} cold loads "
          f"(min {min(r['fcp'] for r in results):.0f}, max {max(r['fcp'] for r in results):.0f})")


if __name__ == "__main__":
    main()
