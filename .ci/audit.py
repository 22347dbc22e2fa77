"""Dependency audit: pip-audit over the installed environment, failing on a known
vulnerability that has a fixed release (upgrade, then run it again).

pip-audit reports "No known vulnerabilities found" even when the vulnerability service
answered for none of the packages (no network, a mirror without its data): that is not a
pass, and this says so instead. Exit status: 1 with a fixable vulnerability, else 0.
"""

from __future__ import annotations

import json
import subprocess
import sys


def verdict(report: dict) -> tuple[int, str]:
    """(exit status, what to print) for pip-audit's JSON report."""
    dependencies = [d for d in report.get("dependencies", [])
                    if d.get("skip_reason") != "distribution marked as editable"]  # this project
    audited = [d for d in dependencies if "skip_reason" not in d]
    fixable = [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions'])})"
               for d in audited for v in d.get("vulns", []) if v.get("fix_versions")]
    unfixed = sum(1 for d in audited for v in d.get("vulns", []) if not v.get("fix_versions"))
    if fixable:
        return 1, "audit: known vulnerabilities with a fix:\n  " + "\n  ".join(fixable)
    if not audited:
        return 0, (f"audit: NOT AUDITED: the vulnerability service answered for none of the {len(dependencies)} "
                   "packages (no network here?)")
    note = f", {unfixed} without a fix yet" if unfixed else ""
    return 0, (f"audit: {len(audited)} of {len(dependencies)} packages checked, no known vulnerability with a fix"
               f"{note}")


def main() -> int:
    run = subprocess.run([sys.executable, "-m", "pip_audit", "--skip-editable", "--format", "json",
                          "--progress-spinner", "off", "--timeout", "10"], capture_output=True, text=True)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        print(f"audit: NOT AUDITED: pip-audit gave no report ({run.stderr.strip().splitlines()[-1:]})")
        return 0
    status, message = verdict(report)
    print(message)
    return status


if __name__ == "__main__":
    sys.exit(main())
