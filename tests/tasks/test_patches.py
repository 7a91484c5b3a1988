"""engine.tasks.patches: the merge patch and what a patch may carry."""

from __future__ import annotations

import pytest

from engine.errors import ValidationError
from engine.tasks.patches import checked_patch, merge_patch


def test_a_merge_patch_merges_objects_removes_nulls_and_replaces_the_rest() -> None:
    target = {"url": "http://a", "headers": {"X": "1", "Y": "2"}, "query": [1]}
    patch = {"headers": {"Y": None, "Z": "3"}, "query": [2], "method": "POST"}
    assert merge_patch(target, patch) == {"url": "http://a", "headers": {"X": "1", "Z": "3"}, "query": [2],
                                          "method": "POST"}  # fmt: skip
    assert target["headers"] == {"X": "1", "Y": "2"}, "the target is not changed"


def test_every_field_that_carries_a_secret_is_named() -> None:
    patch = {"config": {"body": ["ok", "x TOKEN123 y"], "{{ secrets.A }}": 1}, "data": {"n": "{%if secrets%}"}}
    with pytest.raises(ValidationError) as refused:
        checked_patch(patch, {"A": "TOKEN123", "EMPTY": ""})
    assert sorted(f.field for f in refused.value.field_errors) == [
        "patch.config.body.1", "patch.config.{{ secrets.A }}", "patch.data.n",
    ]  # fmt: skip
    assert checked_patch({"data": {"secretsUrl": "plain"}}, {"A": "TOKEN123"}).data == {"secretsUrl": "plain"}
