"""Deploy-time config checks of the built-in executors, as the registry runs them."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.model import Node
from engine.definitions.registry import Registry
from engine.workers.builtin import BUILTIN_EXECUTORS, register_builtin_system_tasks


def problems(node_type: str, config: dict[str, Any]) -> list[str]:
    registry = Registry()
    register_builtin_system_tasks(registry)
    return registry.system_tasks[node_type].validate(Node(id="n", type=node_type, config=config))


def test_every_builtin_type_is_registered() -> None:
    registry = Registry()
    register_builtin_system_tasks(registry)

    assert sorted(registry.system_tasks) == ["delay", "echo", "email", "graphql", "http", "javascript"]
    assert {e.type: e.task_type for e in BUILTIN_EXECUTORS}["graphql"] == "GRAPHQL"


@pytest.mark.parametrize(
    ("node_type", "config"),
    [
        ("http", {"method": "POST", "url": "https://api.example.com/x", "headers": {"A": "b", "N": 1},
                  "query": {"q": ["a", 1]}, "json": {"k": "v"}, "timeoutMs": 500, "expectStatus": [200, 201]}),
        ("http", {"url": "{{ settings.baseUrl }}/healthz", "timeoutMs": "{{ settings.timeout }}",
                  "method": "{{ method }}", "expectStatus": 204}),
        ("graphql", {"url": "https://api.example.com/graphql", "query": "query Q($id: ID!) { node(id: $id) { id } }",
                     "variables": {"id": "{{ id }}"}, "operationName": "Q", "headers": {"X": "y"}}),
        ("javascript", {"code": "return data.x;", "timeoutMs": 200, "memoryMb": 32}),
        ("email", {"to": ["{{ startedBy.email }}"], "cc": [], "subject": "Hi", "body": "b", "html": "<p>b</p>"}),
        ("email", {"to": "{{ recipients }}", "subject": "Hi"}),
        ("delay", {"duration": "PT5S"}),
        ("delay", {"duration": "P1M"}),
        ("delay", {"until": "2026-02-01T09:00:00+01:00"}),
        ("delay", {"until": "{{ approval.decidedAt }}"}),
        ("echo", {"output": {"anything": ["goes"]}}),
    ],
)  # fmt: skip
def test_good_configs_pass(node_type: str, config: dict[str, Any]) -> None:
    assert problems(node_type, config) == []


@pytest.mark.parametrize(
    ("node_type", "config", "expected"),
    [
        ("http", {}, ["config needs 'url'"]),
        ("http", {"url": "https://x.org", "verb": "GET"}, ["config key 'verb' is not known"]),
        ("http", {"url": "https://x.org", "method": "FETCH"}, ["config 'method' must be one of"]),
        ("http", {"url": "x.org/path"}, ["config 'url' must be an absolute http:// or https:// URL"]),
        ("http", {"url": "https://x.org", "timeoutMs": 0}, ["config 'timeoutMs' must be at least 1"]),
        ("http", {"url": "https://x.org", "timeoutMs": True}, ["config 'timeoutMs' must be an integer"]),
        ("http", {"url": "https://x.org", "timeoutMs": 1.5}, ["config 'timeoutMs' must be an integer"]),
        ("http", {"url": "https://x.org", "expectStatus": ["200"]}, ["config 'expectStatus' must be"]),
        ("http", {"url": "https://x.org", "expectStatus": []}, ["config 'expectStatus' must be"]),
        ("http", {"url": "https://x.org", "json": {}, "body": ""}, ["config may have 'json' or 'body'"]),
        ("http", {"url": "https://x.org", "headers": {"A": {"b": 1}}}, ["config 'headers': 'A' must be"]),
        ("http", {"url": "https://x.org", "headers": ["A: b"]}, ["config 'headers' must be an object"]),
        ("graphql", {"url": "https://x.org"}, ["config needs 'query'"]),
        ("graphql", {"url": "https://x.org", "query": "{ broken"}, ["config 'query' does not parse"]),
        ("graphql", {"url": "https://x.org", "query": "{ a }", "variables": [1]}, ["config 'variables' must be"]),
        ("javascript", {}, ["config needs 'code'"]),
        ("javascript", {"code": 42}, ["config 'code' must be a string"]),
        ("javascript", {"code": "", "memoryMb": 4096}, ["config 'memoryMb' must be at least 1 and at most 1024"]),
        ("javascript", {"code": "", "timeoutMs": -1}, ["config 'timeoutMs' must be at least 1"]),
        ("email", {"subject": "x"}, ["config needs 'to'"]),
        ("email", {"to": "a@x.org", "subject": "x"}, ["config 'to' must be a list of strings"]),
        ("email", {"to": [], "subject": "x"}, ["config 'to' must not be empty"]),
        ("email", {"to": ["a@x.org"], "subject": "x", "bcc": []}, ["config key 'bcc' is not known"]),
        ("delay", {}, ["config needs exactly one of 'duration' and 'until'"]),
        ("delay", {"duration": "PT1M", "until": "2026-01-01"}, ["config needs exactly one"]),
        ("delay", {"duration": "5 minutes"}, ["config 'duration' must be an ISO 8601 duration"]),
        ("delay", {"duration": "-PT5M"}, ["config 'duration' must not be negative"]),
        ("delay", {"until": "next tuesday"}, ["config 'until' must be an ISO 8601 date-time"]),
        ("echo", {}, ["config needs 'output'"]),
        ("echo", {"output": 1, "extra": 2}, ["config key 'extra' is not known"]),
    ],
)
def test_bad_configs_are_named(node_type: str, config: dict[str, Any], expected: list[str]) -> None:
    found = problems(node_type, config)

    assert len(found) == len(expected), found
    for message, start in zip(found, expected, strict=True):
        assert message.startswith(start), found
