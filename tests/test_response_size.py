"""searchd.query.response_size: the walk's byte count is never below what orjson writes, and stops at the limit."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from searchd.query.response_size import json_bytes_over

SHAPES: list[Any] = [
    {"data": {"Get": {"Article": [{"title": "Sourdough", "_additional": {"id": "00000000-0000-4000-8000-000000000001", "distance": 0.123456789}}]}}},
    {"data": {"Get": {"a": [{"vector": [0.1, -2.5e-300, 3.0, 1e300, -0.0]}, {"tags": ["x", "y"], "n": [1, -2, 3]}]}}, "errors": None},
    {"data": {"Aggregate": {"Article": [{"meta": {"count": 7}, "published": {"totalTrue": 5, "percentageTrue": 0.7142857142857143}}]}}},
    ["ÿ" * 100, "日本語" * 50, "😀" * 25, 'quote " and \\\\ backslash', "\\u0001 control"],
    [[[[]]], {}, True, False, None, 0, -1, 2**63 - 1],
]


@pytest.mark.parametrize("value", SHAPES)
def test_the_count_is_never_below_the_encoded_size(value: Any) -> None:
    counted = json_bytes_over(value, 10**9)
    assert counted is not None and counted >= len(orjson.dumps(value))


def test_random_results_are_never_undercounted() -> None:
    generator = random.Random(13)

    def value(depth: int) -> Any:
        kind = generator.randrange(6 if depth < 4 else 3)
        if kind == 0:
            return "".join(generator.choice('ab é日😀\\"') for _ in range(generator.randrange(40)))
        if kind == 1:
            return generator.uniform(-1e300, 1e300) if generator.random() < 0.5 else generator.randrange(-(2**62), 2**62)
        if kind == 2:
            return generator.choice([True, False, None])
        if kind == 3:
            return [generator.uniform(-1, 1) for _ in range(generator.randrange(20))]
        if kind == 4:  # (an array holds one type: a list that starts with a number holds numbers only, as kind 3)
            return [v for v in (value(depth + 1) for _ in range(generator.randrange(5))) if not isinstance(v, (int, float)) or isinstance(v, bool)]
        return {f"k{i}": value(depth + 1) for i in range(generator.randrange(5))}

    for _ in range(500):
        result = {"data": value(0)}
        counted = json_bytes_over(result, 10**9)
        assert counted is not None and counted >= len(orjson.dumps(result)), result


def test_the_walk_stops_once_past_the_limit() -> None:
    text = "x" * 1_000
    repeated = [{"body": text} for _ in range(10_000)]  # 10 MB encoded, one string object
    assert json_bytes_over(repeated, 50_000) is None
    assert json_bytes_over(repeated, 20_000_000) == pytest.approx(len(orjson.dumps(repeated)), rel=0.05)
