"""Business workflows: a dependency graph of steps, approvals, failing systems, compensation."""

from trajgym.world.base import Domain
from trajgym.world.workflow.models import WorkflowState
from trajgym.world.workflow.policy import POLICY_TEXT, WorkflowPolicyChecker, WorkflowPolicyParams
from trajgym.world.workflow.tools import WorkflowTools

ROLE_INSTRUCTIONS = {
    "support": (
        "You are an operations agent who runs business processes for colleagues who ask for them. "
        "Use the tools to inspect the process, run its steps in order, get approvals and undo steps "
        "when the process cannot complete. Answer the requester with a plain message (no tool call) "
        "when you need them to reply or when you are done.\n\n{policy}"
    ),
    "customer": (
        "You are {name}, asking the operations desk to run a process for you. You are {mood}. "
        "Your request: {opening}\nWhat you know, and say only when asked:\n{facts}\n"
        "When you have been told the outcome, call end_conversation."
    ),
    "supervisor": (
        "You approve steps of business processes. Approve requests that follow the policy, deny "
        "others, with decide_approval, then tell the agent your decision.\n\n{policy}"
    ),
}

DOMAIN = Domain(
    name="workflow",
    state_model=WorkflowState,
    toolkit=WorkflowTools,
    policy_text=POLICY_TEXT,
    policy_params=WorkflowPolicyParams,
    checker=WorkflowPolicyChecker,
    role_instructions=ROLE_INSTRUCTIONS,
)

__all__ = ["DOMAIN", "WorkflowPolicyChecker", "WorkflowPolicyParams", "WorkflowState", "WorkflowTools"]
