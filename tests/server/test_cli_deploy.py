"""`stepwise definitions deploy` goes through the workflow service, as the API's deploy does: the same
checks and the same rule (only an admin may deploy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main
from tests.transitions.test_durability import approval_then_archive


def test_deploy_is_the_services_with_its_rule(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPWISE_DATABASE_URL", database_url)
    runner = CliRunner()
    assert runner.invoke(main, ["demo", "load"]).exit_code == 0
    document = {**approval_then_archive().to_json(), "key": "cli_deployed"}
    file = tmp_path / "definition.json"
    file.write_text(json.dumps(document))

    refused = runner.invoke(main, ["definitions", "deploy", str(file), "--as", "alice"])  # a requester
    assert refused.exit_code != 0 and "only an admin may deploy" in refused.output, refused.output
    unknown = runner.invoke(main, ["definitions", "deploy", str(file), "--as", "nobody"])
    assert unknown.exit_code != 0 and "no user 'nobody'" in unknown.output, unknown.output

    deployed = runner.invoke(main, ["definitions", "deploy", str(file)])  # as dana, the demo's admin
    assert deployed.exit_code == 0 and "deployed cli_deployed version 1" in deployed.output, deployed.output
    again = runner.invoke(main, ["definitions", "deploy", str(file), "--as", "dana"])
    assert again.exit_code == 0 and "unchanged, already cli_deployed version 1" in again.output, again.output
