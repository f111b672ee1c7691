"""``alertd validate`` checks template bombs quickly and in bounded memory.

Before: ``{{ 'x' * 10**9 }}`` validated (after 22 s and 3.9 GB). Now ``validate`` — the real
command, in a fresh subprocess — reports each bomb as a located error and exits 2 within 2 CPU
seconds, its peak RSS and CPU time measured by a parent process that runs nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"

#: Runs the command and prints its exit code, stderr, peak RSS (kB) and CPU seconds as JSON.
#: CPU time, not wall time: a loaded machine stretches the wall clock, not the work done.
MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": done.returncode, "stderr": done.stderr, "peak_kb": usage.ru_maxrss,
                  "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def test_validate_rejects_template_bombs_fast_and_small(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bombs.yaml").write_text(yaml.safe_dump({"rules": [{
        "name": "bomb", "meter": "mtr_1",
        "condition": {"type": "threshold", "op": ">", "value": 1},
        "annotations": {"summary": "{{ 'x' * 10**9 }}", "detail": LOOP},
    }]}, sort_keys=False))
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text("{{ ('y' * 100000) * 100000 }}\n")
    config = tmp_path / "alertd.yaml"
    config.write_text(yaml.safe_dump({
        "rule_files": ["rules/*.yaml"], "templates_dir": "templates",
        "stripe": {"api_key": "sk_test_bombs"},  # validate requires a key
        "state": {"path": str(tmp_path / "state.db")},
        "receivers": [{"name": "hooks", "webhook": {"url": "https://hooks.example.com/x",
                                                    "body": "{{ ['z'] * 10**10 }}"}}],
        "route": {"receiver": "hooks"},
    }))
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "alertd", "validate",
         "-c", str(config)], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(measured.stdout)

    assert result["code"] == 2
    errors = [line for line in result["stderr"].splitlines() if "template error" in line]
    assert len(errors) == 4, result["stderr"]
    assert "4 problem(s) found" in result["stderr"]
    assert any("bombs.yaml" in e and "exceed 4000000" in e for e in errors)  # 'x' * 10**9
    assert any("bombs.yaml" in e and "steps" in e for e in errors)  # the nested loop
    assert any("email.txt:1:1:" in e and "exceed 4000000" in e for e in errors)
    assert any("alertd.yaml" in e and "exceed 4000000" in e for e in errors)  # the body
    assert result["cpu_s"] < 2.0  # interpreter start included; the bombs took 22 s before
    assert result["peak_kb"] < 200_000
