"""``parse`` rejects every manifest of the invalid corpus and names the field the API server names.

The same files are applied to a real API server in test/integration/test_api_invalid.py; together
the two tests keep the Python rules and the CEL rules of one ``Rule`` in step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentkube.api import InvalidSpec, kind_of

from .conftest import INVALID

CORPUS = sorted(INVALID.glob("*.yaml"))


def expected_fields(path: Path) -> list[str]:
    """The ``# expect:`` line: field paths (alternatives split by ' | ') one of which the error names."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            return [alt.strip() for alt in line.removeprefix("# expect: ").split(" | ")]
    raise AssertionError(f"{path.name} has no '# expect:' line")


def test_corpus_has_at_least_thirty_cases_each_with_one_expectation() -> None:
    assert len(CORPUS) >= 30
    for path in CORPUS:
        assert expected_fields(path)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_parse_rejects_invalid_manifest_naming_the_field(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    kind = kind_of(obj)
    assert kind is not None
    with pytest.raises(InvalidSpec) as caught:
        kind.parse(obj)
    assert len(caught.value.errors) == 1, f"{path.name} should break one rule: {caught.value}"
    assert any(field in str(caught.value) for field in expected_fields(path)), str(caught.value)
