"""The operator's tools: read the process, run steps in their systems, ask for approvals, undo."""

from __future__ import annotations

from typing import Any

import networkx as nx

from trajgym.errors import ToolCallError
from trajgym.world.tools import ToolKit, tool
from trajgym.world.workflow.models import Approval, Step, WorkflowState


class WorkflowTools(ToolKit):
    """Tools of the operator (role ``support``) and the approver (role ``supervisor``)."""

    state: WorkflowState

    def _step(self, step_id: str) -> Step:
        step = self.state.steps.get(step_id)
        if step is None:
            raise ToolCallError(f"step '{step_id}' not found (steps: {', '.join(self.state.steps)})",
                                error_type="not_found")
        return step

    def _view(self, step_id: str, step: Step) -> dict[str, Any]:
        return {"step_id": step_id, **step.model_dump(mode="json")}

    def service_name(self, tool: str, args: dict[str, Any]) -> str:
        step = self.state.steps.get(str(args.get("step_id")))
        return step.system if step is not None else "workflow"

    @tool("read")
    def list_steps(self) -> list[dict[str, Any]]:
        """List the process's steps with their status, dependencies, approvals and deadlines."""
        return [
            {"step_id": sid, "title": s.title, "status": s.status, "depends_on": s.depends_on,
             "needs_approval": s.needs_approval, "deadline_turn": s.deadline_turn,
             "can_undo": s.compensation is not None}
            for sid, s in self.state.steps.items()
        ]

    @tool("read")
    def get_step(self, step_id: str) -> dict[str, Any]:
        """Get one step: its system, dependencies, status, output and how it is undone.

        Args:
            step_id: The step id, e.g. "create_account".
        """
        return self._view(step_id, self._step(step_id))

    @tool("write", verify="get_step")
    def run_step(self, step_id: str) -> dict[str, Any]:
        """Run a step in its system. Its dependencies must be done first.

        Args:
            step_id: The step to run.
        """
        step = self._step(step_id)
        if step.status == "done":
            raise ToolCallError(f"step '{step_id}' is already done", error_type="conflict")
        blocking = [d for d in step.depends_on if self.state.steps[d].status != "done"]
        if blocking:
            raise ToolCallError(f"step '{step_id}' is blocked by unfinished steps: {', '.join(blocking)}",
                                error_type="precondition_failed")
        step.status = "done"
        step.completed_turn = self.turn
        step.late = step.deadline_turn is not None and self.turn > step.deadline_turn
        self.state.log.append(f"turn {self.turn}: ran {step_id} in {step.system}")
        return {"step_id": step_id, "status": "done", "system": step.system, "late": step.late,
                **({"output": step.output} if step.output else {})}

    @tool("write", verify="get_step")
    def compensate_step(self, step_id: str, reason: str) -> dict[str, Any]:
        """Undo a done step (its compensation). Steps that depend on it must be undone first.

        Args:
            step_id: The step to undo.
            reason: Why it is undone.
        """
        step = self._step(step_id)
        if step.status != "done":
            raise ToolCallError(f"step '{step_id}' is {step.status}, not done: nothing to undo",
                                error_type="conflict")
        if step.compensation is None:
            raise ToolCallError(f"step '{step_id}' cannot be undone", error_type="not_supported")
        dependents = [d for d in nx.descendants(self.state.graph(), step_id)
                      if self.state.steps[d].status == "done"]
        if dependents:
            raise ToolCallError(f"undo the steps that depend on '{step_id}' first: {', '.join(sorted(dependents))}",
                                error_type="precondition_failed")
        step.status = "compensated"
        self.state.log.append(f"turn {self.turn}: compensated {step_id}: {reason}")
        return {"step_id": step_id, "status": "compensated", "compensation": step.compensation}

    @tool("write", handoff="supervisor")
    def request_approval(self, step_id: str, reason: str) -> dict[str, Any]:
        """Ask the approver to approve a step; the approver answers next. Asking again about the
        same step chases the pending request.

        Args:
            step_id: The step that needs approval.
            reason: Why it should be approved.
        """
        self._step(step_id)
        for aid, approval in self.state.approvals.items():
            if approval.step_id == step_id and approval.status == "pending":
                approval.requests += 1
                return {"approval_id": aid, "status": "pending", "step_id": step_id, "chased": True}
        approval_id = f"A{len(self.state.approvals) + 1}"
        self.state.approvals[approval_id] = Approval(step_id=step_id, reason=reason)
        return {"approval_id": approval_id, "status": "pending", "step_id": step_id}

    @tool("read")
    def get_approval(self, approval_id: str) -> dict[str, Any]:
        """Get the state of an approval request.

        Args:
            approval_id: The approval id, e.g. "A1".
        """
        approval = self.state.approvals.get(approval_id)
        if approval is None:
            raise ToolCallError(f"approval '{approval_id}' not found", error_type="not_found")
        return {"approval_id": approval_id, **approval.model_dump()}

    @tool("write")
    def decide_approval(self, approval_id: str, approve: bool, note: str) -> dict[str, Any]:
        """Approve or deny a pending request (approver only).

        Args:
            approval_id: The approval id, e.g. "A1".
            approve: True to approve, false to deny.
            note: A short reason for the decision.
        """
        approval = self.state.approvals.get(approval_id)
        if approval is None:
            raise ToolCallError(f"approval '{approval_id}' not found", error_type="not_found")
        if approval.status != "pending":
            raise ToolCallError(f"approval '{approval_id}' was already {approval.status}", error_type="conflict")
        approval.status = "approved" if approve else "denied"
        approval.note = note
        return {"approval_id": approval_id, "step_id": approval.step_id, "status": approval.status}

    @staticmethod
    def effect_visible(tool: str, args: dict[str, Any], read: Any) -> bool:
        if not isinstance(read, dict):
            return False
        if tool == "run_step":
            return read.get("status") == "done"
        if tool == "compensate_step":
            return read.get("status") == "compensated"
        return False
