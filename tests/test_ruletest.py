"""``alertd test``: the shipped rule tests pass, and a wrong expectation fails with a diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.cli import main
from alertd.errors import ConfigError
from alertd.ruletest import expand_values, run_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "rules" / "tests").glob("*.yaml"))


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([1, 2.5], [1.0, 2.5]),
        (["5x3"], [5.0, 5.0, 5.0]),
        ([0, "10 x 2", 3], [0.0, 10.0, 10.0, 3.0]),
        (["1.5x0"], []),
    ],
)
def test_expand_values(items: list[float | str], expected: list[float]) -> None:
    assert expand_values(items) == expected


def test_expand_values_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="AxN"):
        expand_values(["lots"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_rule_tests_pass(path: Path) -> None:
    results = run_file(path)
    assert results and all(r.passed for r in results), [(r.name, r.missing, r.unexpected)
                                                        for r in results]


def fixture(tmp_path: Path, expect: str) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n"
        "  - name: calls-over-100\n"
        "    meter: mtr_calls\n"
        "    when: 'daily usage > 100'\n"
        "    every: 1h\n"
        "    for: 2h\n"
    )
    path = tmp_path / "test.yaml"
    path.write_text(
        "rule_files: [rules.yaml]\n"
        "series:\n"
        "  - {customer: cus_1, meter: mtr_calls, start: 2025-01-06T00:00:00Z,"
        " values: ['10x6', '50x6']}\n"
        "tests:\n"
        f"  - {{name: case, at: 2025-01-06T09:00:00Z, expect: {expect}}}\n"
    )
    return path


def test_for_holds_pending_then_fires(tmp_path: Path) -> None:
    # 60 by 06:00, then +50/h: 110 at 07:00 (pending), still pending at 08:00, firing at 09:00.
    firing = "[{rule: calls-over-100, customer: cus_1, state: firing}]"
    assert run_file(fixture(tmp_path, firing))[0].passed
    pending = "[{rule: calls-over-100, customer: cus_1, state: pending}]"
    result = run_file(fixture(tmp_path, pending))[0]
    assert not result.passed
    assert result.missing == ("calls-over-100 customer=cus_1 state=pending",)
    assert result.unexpected == ("calls-over-100 customer=cus_1 state=firing level=warning",)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(fixture(tmp_path, "[]"))]) == 1
    assert "FAIL" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rule_files: [rules.yaml]\ntests: []\nbogus: 1\n")
    assert main(["test", str(bad)]) == 2
    assert "bad.yaml:3:1: unknown key 'bogus'" in capsys.readouterr().err


def test_invalid_file_names_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rule_files: [x.yaml]\ntests:\n  - {name: a, at: soon}\n")
    with pytest.raises(ConfigError) as caught:
        run_file(bad)
    assert str(caught.value).startswith(f"{bad}:3:")


def between_steps(tmp_path: Path, cases: list[tuple[str, str, str]]) -> Path:
    """Evaluated every 2h from 00:00 with ``for: 2h``; the daily total passes 100 with the
    bucket that ends at 07:00, so the 08:00 step is the first to see it."""
    (tmp_path / "rules.yaml").write_text(
        "rules:\n"
        "  - name: calls-over-100\n"
        "    meter: mtr_calls\n"
        "    when: 'daily usage > 100'\n"
        "    every: 2h\n"
        "    for: 2h\n"
    )
    path = tmp_path / f"test-{len(list(tmp_path.glob('test-*.yaml')))}.yaml"
    lines = [f"  - {{name: '{name}', at: {at}, expect: {expect}}}" for name, at, expect in cases]
    path.write_text(
        "rule_files: [rules.yaml]\n"
        "series:\n"
        "  - {customer: cus_1, meter: mtr_calls, start: 2025-01-06T00:00:00Z,"
        " values: ['10x6', '50x6']}\n"
        "tests:\n" + "\n".join(lines) + "\n"
    )
    return path


PENDING = "[{rule: calls-over-100, customer: cus_1, state: pending}]"
FIRING = "[{rule: calls-over-100, customer: cus_1, state: firing}]"
BETWEEN_STEPS = [
    # Listed out of time order on purpose: results come back in file order.
    ("the 10:00 step fires: pending since the 08:00 step", "2025-01-06T10:00:00Z", FIRING),
    ("a look between steps already sees it", "2025-01-06T07:30:00Z", PENDING),
    # Had the 07:30 look been kept by the replay, pending would date from 07:30 and this
    # would fire; the daemon evaluates at 08:00 and 10:00 only, so it is still pending.
    ("the 07:30 look does not start the for", "2025-01-06T09:45:00Z", PENDING),
    ("before the first bucket, nothing", "2025-01-05T23:00:00Z", "[]"),
    ("two tests may share an instant", "2025-01-06T10:00:00Z", FIRING),
]


def test_one_replay_serves_every_test_and_looks_between_steps_leave_it_alone(
    tmp_path: Path,
) -> None:
    results = run_file(between_steps(tmp_path, BETWEEN_STEPS))
    assert [r.name for r in results] == [name for name, _, _ in BETWEEN_STEPS]
    assert [(r.missing, r.unexpected) for r in results] == [((), ())] * len(BETWEEN_STEPS)


def test_a_test_judged_in_company_is_judged_as_alone(tmp_path: Path) -> None:
    # Each case in a file of its own is a replay from the start up to that case only.
    together = run_file(between_steps(tmp_path, BETWEEN_STEPS))
    alone = [run_file(between_steps(tmp_path, [case]))[0] for case in BETWEEN_STEPS]
    assert [(r.name, r.passed) for r in together] == [(r.name, r.passed) for r in alone]
    # And a wrong expectation in company fails with the same diff as alone.
    wrong = [(name, at, "[]") for name, at, _ in BETWEEN_STEPS]
    together = run_file(between_steps(tmp_path, wrong))
    alone = [run_file(between_steps(tmp_path, [case]))[0] for case in wrong]
    assert [(r.name, r.unexpected) for r in together] == [(r.name, r.unexpected) for r in alone]
    assert together[2].unexpected == ("calls-over-100 customer=cus_1 state=pending level=warning",)
