"""Silences: matcher parsing, matching, time ranges, and add/list/expire on a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd import silences
from alertd.silences import Matcher, new_silence, parse_matcher, parse_matchers, silenced_by
from alertd.store.sqlite import SqliteStore

NOW = 1_735_689_600
LABELS = {"rule": "gpt4-daily", "customer": "cus_1", "severity": "critical", "model": "gpt-4"}


@pytest.mark.parametrize(
    ("text", "expected", "matches"),
    [
        ("customer=cus_1", Matcher("customer", "=", "cus_1"), True),
        ("customer = cus_2", Matcher("customer", "=", "cus_2"), False),
        ('model="gpt-4"', Matcher("model", "=", "gpt-4"), True),
        ("severity!=warning", Matcher("severity", "!=", "warning"), True),
        ("rule=~gpt4-.*", Matcher("rule", "=~", "gpt4-.*"), True),
        ("rule=~gpt4", Matcher("rule", "=~", "gpt4"), False),  # anchored
        ("customer!~cus_[0-9]", Matcher("customer", "!~", "cus_[0-9]"), False),
        ("team=", Matcher("team", "=", ""), True),  # a missing label reads as empty
    ],
)
def test_parse_and_match(text: str, expected: Matcher, matches: bool) -> None:
    matcher = parse_matcher(text)
    assert matcher == expected
    assert matcher.matches(LABELS) is matches


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["customer"], "not a matcher: 'customer'"),
        (["=cus_1"], "not a matcher"),
        (["rule=~gpt4-("], "invalid regular expression"),
        (["team="], "at least one matcher that does not match an empty label"),
        (["rule=~.*"], "at least one matcher that does not match an empty label"),
        (["oops", "rule=~("], "not a matcher: 'oops' .*; 'rule=~(': invalid regular"),
    ],
)
def test_parse_errors_say_what_to_write(texts: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_matchers(texts)


def silence(**overrides: object) -> silences.Silence:
    values: dict[str, object] = {
        "starts_at": NOW, "ends_at": NOW + 7200, "comment": "maintenance", "created_by": "ana",
        "now": NOW,
    }
    values.update(overrides)
    matchers = values.pop("matchers", ["customer=cus_1", "severity=critical"])
    return new_silence(matchers, **values)  # type: ignore[arg-type]


def test_active_window_and_matching() -> None:
    s = silence(starts_at=NOW + 60)
    assert [s.state(t) for t in (NOW, NOW + 60, NOW + 7200)] == ["pending", "active", "expired"]
    assert silenced_by(LABELS, [s], NOW) is None
    assert silenced_by(LABELS, [s], NOW + 60) == s
    assert silenced_by({**LABELS, "customer": "cus_2"}, [s], NOW + 60) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ends_at": NOW}, "must end after it starts"),
        ({"starts_at": NOW - 7200, "ends_at": NOW - 60}, "would already be over"),
        ({"comment": "  "}, "needs a comment"),
    ],
)
def test_invalid_silences(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        silence(**overrides)


async def test_add_list_expire_on_the_store(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "alertd.db") as store:
        first = await silences.add(store, silence())
        second = await silences.add(store, silence(matchers=["rule=gpt4-daily"], now=NOW + 1))
        assert [s.id for s in await silences.listing(store, NOW)] == [first.id, second.id]
        expired = await silences.expire(store, first.id[:8], NOW + 100)
        assert expired.expired and expired.ends_at == NOW + 100
        assert [s.id for s in await silences.listing(store, NOW + 101)] == [second.id]
        everything = await silences.listing(store, NOW + 101, include_expired=True)
        assert everything[0] == expired and everything[0].matchers == first.matchers
    async with SqliteStore(tmp_path / "alertd.db") as reopened:  # silences survive restarts
        assert len(await silences.listing(reopened, NOW + 7201, include_expired=True)) == 2
        assert await silences.listing(reopened, NOW + 7201) == []


async def test_expire_needs_a_known_unique_id(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "alertd.db") as store:
        await silences.add(store, silence(silence_id="abc1"))
        await silences.add(store, silence(silence_id="abc2"))
        with pytest.raises(ValueError, match="no silence with id 'zzz'"):
            await silences.expire(store, "zzz", NOW)
        with pytest.raises(ValueError, match="matches 2 silences"):
            await silences.expire(store, "abc", NOW)
