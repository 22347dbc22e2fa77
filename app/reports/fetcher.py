"""The URL fetcher WeasyPrint is given for reports (imported only when a PDF is written)."""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from pathlib import Path

from weasyprint.urls import URLFetcher, URLFetcherResponse

from ..images import image_allowed

log = logging.getLogger(__name__)
MAX_IMAGE_BYTES = 5 * 1024**2


class ReportFetcher(URLFetcher):
    """Static files from disk; images from the allowed image hosts only, each within
    `timeout` seconds and all of them within `budget`; nothing else. What it refuses or
    cannot get, WeasyPrint leaves out of the PDF."""

    def __init__(self, static_dir: Path, settings, *, base_url: str, timeout: float, budget: float):
        super().__init__(timeout=timeout, allowed_protocols={"http", "https"}, allow_redirects=False)
        self._static_url = f"{base_url}static/"
        self._static, self._settings = static_dir.resolve(), settings
        self._timeout, self._budget, self._spent = timeout, budget, 0.0

    def fetch(self, url, headers=None):
        if url.startswith(self._static_url):
            path = (self._static / url[len(self._static_url):].split("?")[0]).resolve()
            if not path.is_relative_to(self._static) or not path.is_file():
                raise ValueError(f"no static file {url}")
            return URLFetcherResponse(url, path.read_bytes(), {
                "Content-Type": mimetypes.guess_type(path.name)[0] or "application/octet-stream"})
        if not image_allowed(url, self._settings):
            raise ValueError(f"not an image host: {url}")
        if self._spent >= self._budget:
            raise ValueError("the report's time for fetching images is spent")
        started = time.monotonic()
        try:
            return self._bounded(url, headers, min(self._timeout, self._budget - self._spent))
        except Exception:
            log.info("report: image %s left out (not fetched within %.0f s)", url, self._timeout)
            raise
        finally:
            self._spent += time.monotonic() - started

    def _bounded(self, url, headers, limit: float) -> URLFetcherResponse:
        """The whole fetch (name lookup, which no socket timeout covers, connection and
        body) in a thread that is given up on after `limit` seconds."""
        outcome: dict = {}

        def run() -> None:
            try:
                response = super(ReportFetcher, self).fetch(url, headers)
                try:
                    body = response.read(MAX_IMAGE_BYTES + 1)
                finally:
                    response.close()
                if len(body) > MAX_IMAGE_BYTES:
                    raise ValueError("image too large")
                outcome["response"] = URLFetcherResponse(url, body, {"Content-Type": response.headers.get(
                    "Content-Type", "application/octet-stream")})
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="report-image", daemon=True)
        worker.start()
        worker.join(max(limit, 0.0))
        if worker.is_alive():
            raise TimeoutError(f"no answer within {limit:.1f} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]
