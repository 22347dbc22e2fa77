"""CI's dependency audit (.ci/audit.py) reads pip-audit's report: a fixable vulnerability
fails it; a report where nothing could be checked is said to be no audit at all."""

from __future__ import annotations

import importlib.util

from app.config import ROOT

spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

EDITABLE = {"name": "audiospective", "skip_reason": "distribution marked as editable"}


def test_a_vulnerability_with_a_fix_fails_the_audit():
    status, message = audit.verdict({"dependencies": [
        EDITABLE, {"name": "flask", "version": "2.0.0", "vulns": [
            {"id": "PYSEC-2023-62", "fix_versions": ["2.2.5", "2.3.2"]}]},
        {"name": "jinja2", "version": "3.1.6", "vulns": []}]})
    assert status == 1 and "flask 2.0.0: PYSEC-2023-62 (fixed in 2.2.5, 2.3.2)" in message


def test_a_vulnerability_without_a_fix_is_reported_but_passes():
    status, message = audit.verdict({"dependencies": [
        {"name": "ijson", "version": "3.6.0", "vulns": [{"id": "GHSA-x", "fix_versions": []}]}]})
    assert status == 0 and "1 without a fix yet" in message


def test_nothing_checked_is_not_a_pass():
    status, message = audit.verdict({"dependencies": [EDITABLE, {
        "name": "flask", "skip_reason": "Dependency not found on PyPI and could not be audited: flask (3.1.3)"}]})
    assert status == 0 and message.startswith("audit: NOT AUDITED") and "none of the 1 packages" in message


def test_a_clean_report_says_how_much_was_checked():
    status, message = audit.verdict({"dependencies": [{"name": "flask", "version": "3.1.3", "vulns": []}]})
    assert (status, message) == (0, "audit: 1 of 1 packages checked, no known vulnerability with a fix")
