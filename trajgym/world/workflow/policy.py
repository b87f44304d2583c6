"""The operations policy and the checker of its rules."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from trajgym.world.base import PolicyChecker, Violation
from trajgym.world.workflow.models import WorkflowState

POLICY_TEXT = """\
Operations policy for business processes.
1. Order: run a step only after every step it depends on is done (list_steps shows them).
2. Approvals: a step marked needs_approval may run only after an approver approved it
   (request_approval). If the approver has not decided, ask again (chase) before going on.
3. Failures: if a system fails, retry. If a step cannot be completed (its system stays down, or
   its approval is denied), back out: undo the steps already done with compensate_step, the
   latest first, and tell the requester plainly that the process did not complete and why.
4. Deadlines: finish each step before its deadline_turn when it has one.
5. When the process is complete, tell the requester it is done.
"""


class WorkflowPolicyParams(BaseModel):
    """Parameters of the policy's checked rules (``policy.rules`` in a scenario)."""

    model_config = ConfigDict(extra="forbid")

    approvals_required: bool = True


class WorkflowPolicyChecker(PolicyChecker[WorkflowState, WorkflowPolicyParams]):
    """Rule ``approval_required``: no step that needs approval runs without an approved request."""

    def rules(self) -> list[str]:
        return ["approval_required"] if self.params.approvals_required else []

    def before_call(self, role: str, tool: str, args: dict[str, Any], state: WorkflowState) -> list[Violation]:
        if tool != "run_step" or not self.params.approvals_required:
            return []
        step_id = str(args.get("step_id"))
        step = state.steps.get(step_id)
        if step is None or not step.needs_approval:
            return []
        if any(a.step_id == step_id and a.status == "approved" for a in state.approvals.values()):
            return []
        return [Violation("approval_required", f"ran {step_id} without an approved approval")]
