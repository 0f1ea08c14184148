"""An NVD CVE JSON 2.0 feed for the CVEs the PyPA advisories name: test data, mostly SYNTHETIC.

There is no network to NVD here, so this builds, for a list of CVE ids, a file in NVD's feed
syntax (``nvdcve-2.0-*.json``: ``{"resultsPerPage", "startIndex", "totalResults", "format":
"NVD_CVE", "version": "2.0", "timestamp", "vulnerabilities": [{"cve": {...}}]}``, field names
as in NVD's CVE API 2.0 schema). Its values are of two kinds:

- ``KNOWN``: a dozen CVEs of PyPA advisories with the CVSS vectors, scores, CWE and CISA KEV
  dates NVD publishes for them, transcribed by hand (not fetched, and not re-checked here:
  there is no network to NVD); each score is recomputed from its vector below. Their other
  fields (published dates but CVE-2020-14343's, references) are placeholders.
- every other CVE: **synthetic** metrics, a deterministic function of the CVE id (a vector
  drawn from its hash, the base score computed from the vector by the ``cvss`` library, the
  version following the CVE's year as NVD's did: v2 only before 2016, v3.x + v2 until 2022,
  v3.1 after, some with a CNA's Secondary v3.1 or v4.0 beside it, some awaiting analysis with
  only the CNA's). Their descriptions say so. They are not NVD's data and say nothing about
  the real severity of those CVEs.

The same ids give the same bytes (fixed timestamps), so importing a rebuilt file writes
nothing. Run it to write a file::

    python tests/advisories/nvd_feed.py OUT.json[.gz] [PYPA_VULNS_DIR]
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import cvss

TIMESTAMP = "2026-12-01T02:00:00.000"
LAST_MODIFIED = "2026-11-21T05:00:00.000"
_CVE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")

#: NVD's published metrics for some CVEs the PyPA advisories name (v3.x vector, v2 vector,
#: CWE, CISA KEV date added). The score is the vector's, computed below.
KNOWN: dict[str, dict] = {
    "CVE-2020-14343": {"v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                       "v2": "AV:N/AC:L/Au:N/C:P/I:P/A:P", "cwe": "CWE-20",
                       "published": "2021-02-09T21:15:12.857",
                       "source_identifier": "secalert@redhat.com"},
    "CVE-2020-1747": {"v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                      "v2": "AV:N/AC:L/Au:N/C:C/I:C/A:C", "cwe": "CWE-20"},
    "CVE-2017-18342": {"v3": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                       "v2": "AV:N/AC:L/Au:N/C:P/I:P/A:P", "cwe": "CWE-20"},
    "CVE-2019-20477": {"v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                       "v2": "AV:N/AC:L/Au:N/C:P/I:P/A:P", "cwe": "CWE-502"},
    "CVE-2014-1829": {"v2": "AV:N/AC:L/Au:N/C:P/I:N/A:N", "cwe": "CWE-200"},
    "CVE-2018-18074": {"v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                       "v2": "AV:N/AC:L/Au:N/C:P/I:N/A:N", "cwe": "CWE-522"},
    "CVE-2023-32681": {"v3": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N",
                       "cwe": "CWE-200"},
    "CVE-2023-30861": {"v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
                       "cwe": "CWE-539"},
    "CVE-2021-33503": {"v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
                       "v2": "AV:N/AC:L/Au:N/C:N/I:N/A:P", "cwe": "CWE-400"},
    "CVE-2022-40897": {"v3": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H",
                       "cwe": "CWE-1333"},
    "CVE-2020-11978": {"v3": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
                       "v2": "AV:N/AC:L/Au:S/C:P/I:P/A:P", "cwe": "CWE-78",
                       "kev": ("2022-01-18", "2022-07-18",
                               "Apache Airflow Command Injection")},
}

_V3_NAMES = {
    "AV": ("attackVector", {"N": "NETWORK", "A": "ADJACENT_NETWORK", "L": "LOCAL",
                            "P": "PHYSICAL"}),
    "AC": ("attackComplexity", {"L": "LOW", "H": "HIGH"}),
    "PR": ("privilegesRequired", {"N": "NONE", "L": "LOW", "H": "HIGH"}),
    "UI": ("userInteraction", {"N": "NONE", "R": "REQUIRED"}),
    "S": ("scope", {"U": "UNCHANGED", "C": "CHANGED"}),
    "C": ("confidentialityImpact", {"H": "HIGH", "L": "LOW", "N": "NONE"}),
    "I": ("integrityImpact", {"H": "HIGH", "L": "LOW", "N": "NONE"}),
    "A": ("availabilityImpact", {"H": "HIGH", "L": "LOW", "N": "NONE"}),
}
_V2_NAMES = {
    "AV": ("accessVector", {"N": "NETWORK", "A": "ADJACENT_NETWORK", "L": "LOCAL"}),
    "AC": ("accessComplexity", {"L": "LOW", "M": "MEDIUM", "H": "HIGH"}),
    "Au": ("authentication", {"N": "NONE", "S": "SINGLE", "M": "MULTIPLE"}),
    "C": ("confidentialityImpact", {"N": "NONE", "P": "PARTIAL", "C": "COMPLETE"}),
    "I": ("integrityImpact", {"N": "NONE", "P": "PARTIAL", "C": "COMPLETE"}),
    "A": ("availabilityImpact", {"N": "NONE", "P": "PARTIAL", "C": "COMPLETE"}),
}


def _parts(vector: str) -> dict[str, str]:
    return dict(p.split(":", 1) for p in vector.split("/") if ":" in p and p != "CVSS")


def v3_metric(vector: str, *, source: str = "nvd@nist.gov", kind: str = "Primary") -> dict:
    """One ``cvssMetricV31``/``cvssMetricV30`` entry as NVD writes it."""
    score = cvss.CVSS3(vector)
    data = {"version": vector[5:8], "vectorString": vector,
            **{_V3_NAMES[k][0]: _V3_NAMES[k][1][v] for k, v in _parts(vector).items()
               if k in _V3_NAMES},
            "baseScore": float(score.base_score),
            "baseSeverity": score.severities()[0].upper()}
    return {"source": source, "type": kind, "cvssData": data,
            "exploitabilityScore": float(round(score.esc, 1)),
            "impactScore": float(round(max(score.isc, 0), 1))}


def v2_metric(vector: str, *, source: str = "nvd@nist.gov", kind: str = "Primary") -> dict:
    """One ``cvssMetricV2`` entry: v2's ``baseSeverity`` sits beside ``cvssData``."""
    base = float(cvss.CVSS2(vector).base_score)
    data = {"version": "2.0", "vectorString": vector,
            **{_V2_NAMES[k][0]: _V2_NAMES[k][1][v] for k, v in _parts(vector).items()},
            "baseScore": base}
    severity = "HIGH" if base >= 7.0 else "MEDIUM" if base >= 4.0 else "LOW"
    return {"source": source, "type": kind, "cvssData": data, "baseSeverity": severity,
            "acInsufInfo": False, "obtainAllPrivilege": False, "obtainUserPrivilege": False,
            "obtainOtherPrivilege": False, "userInteractionRequired": False}


def v4_metric(vector: str, *, source: str, kind: str = "Secondary") -> dict:
    """One ``cvssMetricV40`` entry (NVD lists a CNA's v4.0 scores as Secondary)."""
    score = cvss.CVSS4(vector)
    names = {"AV": "attackVector", "AC": "attackComplexity", "AT": "attackRequirements",
             "PR": "privilegesRequired", "UI": "userInteraction",
             "VC": "vulnConfidentialityImpact", "VI": "vulnIntegrityImpact",
             "VA": "vulnAvailabilityImpact", "SC": "subConfidentialityImpact",
             "SI": "subIntegrityImpact", "SA": "subAvailabilityImpact"}
    words = {"N": "NONE", "L": "LOW", "H": "HIGH", "A": "ADJACENT", "P": "PRESENT"}
    data = {"version": "4.0", "vectorString": vector, "baseScore": float(score.base_score),
            "baseSeverity": score.severity.upper(),
            **{names[k]: ("NETWORK" if (k, v) == ("AV", "N") else words.get(v, v))
               for k, v in _parts(vector).items() if k in names},
            "exploitMaturity": "NOT_DEFINED"}
    return {"source": source, "type": kind, "cvssData": data}


def cve_record(cve: str, *, metrics: dict, cwe: str | None = None,
               status: str = "Analyzed", description: str = "",
               published: str | None = None, last_modified: str = LAST_MODIFIED,
               kev: tuple[str, str, str] | None = None) -> dict:
    year = cve.split("-")[1]
    record = {
        "id": cve, "sourceIdentifier": "cve@mitre.org",
        "published": published or f"{year}-06-01T12:15:00.000",
        "lastModified": last_modified, "vulnStatus": status, "cveTags": [],
        "descriptions": [{"lang": "en", "value": description or f"Description of {cve}."}],
        "metrics": metrics,
        "weaknesses": [{"source": "nvd@nist.gov", "type": "Primary",
                        "description": [{"lang": "en", "value": cwe or "NVD-CWE-noinfo"}]}],
        "references": [{"url": f"https://www.cve.org/CVERecord?id={cve}",
                        "source": "cve@mitre.org"}],
    }
    if kev:
        record.update(cisaExploitAdd=kev[0], cisaActionDue=kev[1],
                      cisaRequiredAction="Apply updates per vendor instructions.",
                      cisaVulnerabilityName=kev[2])
    return {"cve": record}


def _known(cve: str, facts: dict) -> dict:
    metrics: dict[str, list] = {}
    if "v3" in facts:
        key = "cvssMetricV31" if facts["v3"].startswith("CVSS:3.1/") else "cvssMetricV30"
        metrics[key] = [v3_metric(facts["v3"])]
    if "v2" in facts:
        metrics["cvssMetricV2"] = [v2_metric(facts["v2"])]
    record = cve_record(cve, metrics=metrics, cwe=facts["cwe"], kev=facts.get("kev"),
                        published=facts.get("published"),
                        description=f"{cve}: metrics as NVD publishes them (transcribed for "
                                    "immune's tests).")
    record["cve"]["sourceIdentifier"] = facts.get("source_identifier", "cve@mitre.org")
    return record


def _pick(digest: bytes, at: int, choices: str | tuple) -> str:
    return choices[digest[at] % len(choices)]


def _synthetic(cve: str) -> dict:
    digest = hashlib.sha256(cve.encode()).digest()
    year = int(cve.split("-")[1])
    v3 = ("CVSS:{}/AV:{}/AC:{}/PR:{}/UI:{}/S:{}/C:{}/I:{}/A:{}".format(
        "3.0" if year <= 2016 else "3.1", _pick(digest, 0, "NNNNLLA"), _pick(digest, 1, "LLLH"),
        _pick(digest, 2, "NNNLH"), _pick(digest, 3, "NNR"), _pick(digest, 4, "UUUC"),
        _pick(digest, 5, "HHLN"), _pick(digest, 6, "HLLN"), _pick(digest, 7, "HHLN")))
    if "C:N/I:N/A:N" in v3:
        v3 = v3[:-1] + "L"
    v2 = "AV:{}/AC:{}/Au:{}/C:{}/I:{}/A:{}".format(
        _pick(digest, 8, "NNNL"), _pick(digest, 9, "LLMH"), _pick(digest, 10, "NNS"),
        _pick(digest, 11, "PPCN"), _pick(digest, 12, "PPN"), _pick(digest, 13, "PPNC"))
    metrics: dict[str, list] = {}
    status = "Analyzed" if digest[14] % 4 else "Modified"
    if year < 2016:
        metrics["cvssMetricV2"] = [v2_metric(v2)]
    else:
        key = "cvssMetricV30" if v3.startswith("CVSS:3.0/") else "cvssMetricV31"
        metrics[key] = [v3_metric(v3)]
        if year <= 2022:
            metrics["cvssMetricV2"] = [v2_metric(v2)]
        if year >= 2021 and digest[15] % 3 == 0:  # the CNA's own score beside NVD's
            cna = v3.replace("/AC:L/", "/AC:H/") if "/AC:L/" in v3 else v3
            metrics[key].append(v3_metric(cna, source="security-advisories@github.com",
                                          kind="Secondary"))
        if year >= 2024 and digest[16] % 2 == 0:
            metrics["cvssMetricV40"] = [v4_metric(
                "CVSS:4.0/AV:N/AC:L/AT:{}/PR:N/UI:N/VC:H/VI:{}/VA:N/SC:N/SI:N/SA:N".format(
                    _pick(digest, 17, "NP"), _pick(digest, 18, "HLN")),
                source="security-advisories@github.com")]
        if year >= 2023 and digest[19] % 10 == 0:  # awaiting analysis: only the CNA's
            status = "Awaiting Analysis"
            metrics = {key: [v3_metric(v3, source="security-advisories@github.com",
                                       kind="Secondary")]}
    return cve_record(cve, metrics=metrics, cwe=f"CWE-{20 + digest[20] % 60}", status=status,
                      description=f"SYNTHETIC test record for {cve} in NVD's JSON 2.0 syntax; "
                                  "its metrics are made up, not NVD's.")


def build_feed(cve_ids: Iterable[str]) -> dict:
    """The feed document for these CVEs (KNOWN values where we have them, else synthetic)."""
    ids = sorted(set(cve_ids), key=lambda c: (int(c.split("-")[1]), int(c.split("-")[2])))
    items = [_known(c, KNOWN[c]) if c in KNOWN else _synthetic(c) for c in ids]
    return {"resultsPerPage": len(items), "startIndex": 0, "totalResults": len(items),
            "format": "NVD_CVE", "version": "2.0", "timestamp": TIMESTAMP,
            "vulnerabilities": items}


def pypa_cve_ids(root: Path) -> list[str]:
    """Every CVE id the advisories under ``root`` name (ids and aliases, as text)."""
    found: set[str] = set()
    for path in root.rglob("*"):
        if path.suffix in (".yaml", ".yml", ".json"):
            found.update(_CVE.findall(path.read_text(errors="replace")))
    return sorted(found)


def write_feed(path: Path, cve_ids: Iterable[str]) -> Path:
    data = json.dumps(build_feed(cve_ids), indent=None).encode()
    if path.name.endswith(".gz"):
        # mtime=0: the same ids give the same bytes.
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1])
    root = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/pypa-advisory-db/vulns")
    ids = pypa_cve_ids(root)
    write_feed(out, ids)
    known = sum(1 for c in ids if c in KNOWN)
    print(f"{out}: {len(ids)} CVEs, {known} with NVD's published metrics, "
          f"{len(ids) - known} synthetic")
