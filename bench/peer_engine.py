"""2. Peer engine: the approval workload on Stepwise and on SpiffWorkflow, same run, same PostgreSQL.

SpiffWorkflow runs ``bench/approval.bpmn`` (start → two user tasks → end). After each step the
workflow is serialized with its standard ``BpmnWorkflowSerializer`` and written to PostgreSQL
(INSERT at start, then ``SELECT … FOR UPDATE`` to reload it before each signal and UPDATE after),
one committed transaction per step, through the same SQLAlchemy/asyncpg pool Stepwise uses. Both run
from 1 and from 16 concurrent in-process drivers, in rounds that alternate which engine runs first;
the ratio is the median of the rounds' ratios. Target: Stepwise instances/s ≥ 2× SpiffWorkflow's.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import (
    Target,
    heading,
    instance_counts,
    line_buffered,
    print_environment,
    print_targets,
    sqlalchemy_url,
    temporary_database,
)
from bench.workload import ARCHIVE, DECISION, START_INPUT, Run, drive, prepare_engine, run_stepwise
from engine.storage.database import Database

NAME = "peer_engine"
GOAL = 2.0
ROUNDS = 5
BPMN = Path(__file__).with_name("approval.bpmn")
PROCESS_ID = "bench_approval"


class SpiffRunner:
    """SpiffWorkflow with the persistence an application would give it: one row per workflow."""

    def __init__(self, db: Database) -> None:
        from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
        from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
        from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
        from SpiffWorkflow.util.task import TaskState

        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN))
        self.spec = parser.get_spec(PROCESS_ID)
        self.serializer = BpmnWorkflowSerializer()
        self.workflow_class = BpmnWorkflow
        self.ready = TaskState.READY
        self.db = db
        self.last_size = 0

    async def create_table(self) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                text(
                    "CREATE TABLE spiff_workflows (id uuid PRIMARY KEY, state jsonb NOT NULL, "
                    "completed boolean NOT NULL, revision integer NOT NULL, updated_at timestamptz NOT NULL)"
                )
            )

    def _serialize(self, workflow: Any) -> str:
        state: str = self.serializer.serialize_json(workflow)
        self.last_size = len(state)
        return state

    async def start(self) -> str:
        workflow = self.workflow_class(self.spec)
        for task in workflow.get_tasks(state=self.ready):
            task.data.update(START_INPUT)
        workflow.do_engine_steps()
        workflow_id = str(uuid.uuid4())
        async with self.db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO spiff_workflows (id, state, completed, revision, updated_at) "
                    "VALUES (:id, CAST(:state AS jsonb), :completed, 0, now())"
                ),
                {"id": workflow_id, "state": self._serialize(workflow), "completed": workflow.is_completed()},
            )
        return workflow_id

    async def signal(self, workflow_id: str, node: str, payload: dict[str, Any]) -> bool:
        async with self.db.transaction() as session:
            row = (
                await session.execute(
                    text("SELECT state::text AS state, revision FROM spiff_workflows WHERE id = :id FOR UPDATE"),
                    {"id": workflow_id},
                )
            ).one()
            workflow = self.serializer.deserialize_json(row.state)
            [task] = [t for t in workflow.get_tasks(state=self.ready) if t.task_spec.name == node]
            task.data[node] = payload
            task.run()
            workflow.do_engine_steps()
            await session.execute(
                text(
                    "UPDATE spiff_workflows SET state = CAST(:state AS jsonb), completed = :completed, "
                    "revision = revision + 1, updated_at = now() WHERE id = :id AND revision = :revision"
                ),
                {
                    "id": workflow_id,
                    "state": self._serialize(workflow),
                    "completed": workflow.is_completed(),
                    "revision": row.revision,
                },
            )
        completed: bool = workflow.is_completed()
        return completed

    async def one_instance(self) -> None:
        workflow_id = await self.start()
        await self.signal(workflow_id, "approvalDecision", DECISION)
        if not await self.signal(workflow_id, "archive", ARCHIVE):
            raise RuntimeError(f"spiff workflow {workflow_id} did not complete")


def describe(engine: str, run: Run) -> str:
    return (
        f"{engine:<14} drivers={run.drivers:<2} instances={run.instances} seconds={run.seconds:.2f} "
        f"instances/s={run.instances_per_second:.1f} transitions/s={run.transitions_per_second:.1f}"
    )


async def run(instances_c1: int, instances_c16: int) -> list[Target]:
    heading("2. Peer engine: Stepwise vs SpiffWorkflow (approval workload, persisted to PostgreSQL per step)")
    await print_environment()
    print(
        f"sizes: c=1 {instances_c1} instances, c=16 {instances_c16} instances per engine, in {ROUNDS} rounds "
        f"that alternate which engine runs first; the ratio is the median of the rounds' ratios. "
        f"SpiffWorkflow: {BPMN.name}, BpmnWorkflowSerializer JSON in a jsonb row, reloaded (FOR UPDATE) "
        "before each signal"
    )
    targets: list[Target] = []
    async with temporary_database(NAME) as dsn:
        engine = await prepare_engine(sqlalchemy_url(dsn))
        spiff_db = Database(sqlalchemy_url(dsn))
        try:
            spiff = SpiffRunner(spiff_db)
            await spiff.create_table()
            await run_stepwise(engine, 20, 4)  # warm-up both
            await drive(spiff.one_instance, 20, 4)
            print(f"spiff serialized workflow: {spiff.last_size} bytes of JSON (completed instance)")
            for drivers, instances in ((1, instances_c1), (16, instances_c16)):
                ratios = []
                per_round = max(drivers, instances // ROUNDS)
                for number in range(ROUNDS):
                    # The host's speed drifts within seconds: a pair of runs side by side, repeated, and
                    # each engine first in every other pair, so a slow spell weighs on both alike.
                    stepwise_first = number % 2 == 0
                    if stepwise_first:
                        stepwise = await run_stepwise(engine, per_round, drivers)
                    peer = await drive(spiff.one_instance, per_round, drivers)
                    if not stepwise_first:
                        stepwise = await run_stepwise(engine, per_round, drivers)
                    ratios.append(stepwise.instances_per_second / peer.instances_per_second)
                    print(f"round {number + 1}/{ROUNDS}, {'stepwise' if stepwise_first else 'spiffworkflow'} first:")
                    print("  " + describe("stepwise", stepwise))
                    print("  " + describe("spiffworkflow", peer))
                    print(f"  ratio {ratios[-1]:.3f}", flush=True)
                ratio = statistics.median(ratios)
                print(
                    f"ratio c={drivers}: median of the rounds' stepwise instances/s / spiffworkflow instances/s "
                    f"({', '.join(f'{r:.2f}' for r in ratios)}) = {ratio:.3f} (goal >= {GOAL})",
                    flush=True,
                )
                targets.append(Target(f"peer_c{drivers}_vs_spiffworkflow", ratio, GOAL, "x", True))
        finally:
            await spiff_db.dispose()
            await engine.db.dispose()
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    asyncio.run(run(*instance_counts("python -m bench.peer_engine", __doc__, c1=500, c16=1600)))


if __name__ == "__main__":
    main()
