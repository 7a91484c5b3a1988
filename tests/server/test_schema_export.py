"""The committed schema.graphql is the served schema, so client code generators read what the server serves."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from server.cli import main

COMMITTED = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_stepwise_schema_export_prints_the_served_sdl() -> None:
    result = CliRunner().invoke(main, ["schema", "export"])

    assert result.exit_code == 0, result.output
    assert "type Mutation {" in result.stdout
    assert "type Query {" in result.stdout


def test_the_committed_schema_graphql_is_the_served_schema() -> None:
    exported = CliRunner().invoke(main, ["schema", "export"]).stdout

    assert COMMITTED.read_text() == exported, (
        "schema.graphql differs from the schema the code serves: run `stepwise schema export > schema.graphql`"
    )
