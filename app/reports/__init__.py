"""Listening reports: a period's panels as a printable document ("2025 in review").

    report.py    gather the panels, render the HTML (preview) and the PDF (WeasyPrint)
    fetcher.py   what WeasyPrint may fetch: static files, allowed image hosts, briefly
    routes.py    /report/preview

A PDF is written by the export job (format "pdf"): stored, listed, mailed, downloaded and
expired like any export (app/exports).
"""
