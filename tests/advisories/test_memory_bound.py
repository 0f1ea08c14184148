"""The import's memory bound (issue 13), checked on a real `import_advisories` process.

The process runs with its address space capped (RLIMIT_AS, 1 GiB): the issue's 503-byte
"billion laughs" YAML drove the import to 3.7 GB and a MemoryError. Here it, a deeply nested
JSON and YAML, a YAML node flood, a 10 GiB file and the costliest document the file cap still
admits (16 MiB of empty JSON lists) are each refused with a reason, the valid record beside
them is imported, and the command exits 0. Peak RSS is printed (`-s`), not asserted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from apps.advisories.models import Advisory
from tests.advisories.test_hostile_input import BILLION_LAUGHS, record
from tests.helpers import ROOT, current_database_url

ADDRESS_SPACE = 1024 * 1024 * 1024


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_hostile_folder_imports_within_one_gib(tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "lol.yaml").write_text(BILLION_LAUGHS)
    (feed / "deep.json").write_text("[" * 1_000_000 + "]" * 1_000_000)
    (feed / "deep.yaml").write_text("x: " + "[" * 1_000_000 + "]" * 1_000_000)
    (feed / "flood.yaml").write_text("id: Y\nx:\n" + "- []\n" * 400_000)
    with (feed / "huge.json").open("wb") as handle:
        handle.truncate(10 * 1024 * 1024 * 1024)  # sparse
    # Just under ADVISORY_MAX_FILE_BYTES: ~5.6 M empty lists, the most objects per byte.
    (feed / "lists.json").write_text("[" + ",".join(["[]"] * (16 * 1024 * 1024 // 3 - 1)) + "]")
    (feed / "good.json").write_text(json.dumps(record("PYSEC-0000-1")))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL=current_database_url(), DJANGO_SETTINGS_MODULE="immune.settings")
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "import_advisories", str(feed), "--json"],
            cwd=ROOT, env=env, stdout=out, stderr=err,
            preexec_fn=_cap_address_space,  # noqa: PLW1509 - only sets an rlimit
        )
        # wait4 gives this child's own peak RSS (output goes to files, so nothing blocks).
        _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    err_text = err_path.read_text(errors="replace")
    print(f"\nimport_advisories peak RSS {usage.ru_maxrss / 1024:.0f} MiB, "
          f"{usage.ru_utime + usage.ru_stime:.1f} s CPU, under RLIMIT_AS "
          f"{ADDRESS_SPACE >> 20} MiB")
    assert process.returncode == 0, err_text[-2000:]
    summary = json.loads(out_path.read_text().strip().splitlines()[-1])
    reasons = {os.path.basename(f["path"]): f["reason"] for f in summary["failures"]}
    assert reasons["lol.yaml"].startswith("YAML aliases/anchors are not allowed")
    assert reasons["deep.json"] == "nested deeper than 32 levels"
    assert reasons["deep.yaml"] == "nested deeper than 32 levels"
    assert reasons["flood.yaml"] == ("YAML document has more than 100000 nodes "
                                     "(ADVISORY_MAX_YAML_NODES)")
    assert reasons["huge.json"].startswith("file is 10737418240 bytes, above the cap")
    assert reasons["lists.json"].startswith("document holds 5592404 records, above the cap")
    assert (summary["records"], summary["created"], summary["failed"]) == (7, 1, 6)
    assert list(Advisory.objects.values_list("osv_id", flat=True)) == ["PYSEC-0000-1"]
    assert "MemoryError" not in err_text
