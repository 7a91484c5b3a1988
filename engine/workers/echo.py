"""The ``echo`` system task: its ``output`` config, already rendered by the engine, is the result.

Useful for shaping data between steps (``{"total": "{{ expense.amount }}"}`` keeps the number a number) and as
the simplest system task to test the machinery with.
"""

from __future__ import annotations

from engine.definitions.model import Node
from engine.workers.config_checks import check_keys
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext, WaitUntil


class EchoExecutor:
    """Runs ``echo`` nodes: stores the rendered ``output`` value as is."""

    type = "echo"
    task_type = "ECHO"

    def validate(self, node: Node) -> list[str]:
        return check_keys(node.config, ("output",), ("output",))

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        return ExecutionResult(output=request.config.get("output"))
