"""Tool use: a task in a sandboxed workspace (files, shell, Python), checked by a script."""

from trajgym.world.base import Domain
from trajgym.world.tool_use.models import ToolUseState
from trajgym.world.tool_use.policy import POLICY_TEXT, ToolUsePolicyChecker, ToolUsePolicyParams
from trajgym.world.tool_use.tools import ToolUseTools

ROLE_INSTRUCTIONS = {
    "support": (
        "You are an engineer's assistant with a sandboxed workspace (files, a shell, Python 3; no "
        "network). Do the task you are asked for with the tools, then tell the requester, with a "
        "plain message (no tool call), what you did.\n\n{policy}"
    ),
    "customer": (
        "You are {name}, asking an assistant to do a task in your workspace. You are {mood}. "
        "Your request: {opening}\nWhat you know, and say only when asked:\n{facts}\n"
        "When the assistant says it is done, call end_conversation."
    ),
    "supervisor": "You review requests from the assistant.\n\n{policy}",
}

DOMAIN = Domain(
    name="tool_use",
    state_model=ToolUseState,
    toolkit=ToolUseTools,
    policy_text=POLICY_TEXT,
    policy_params=ToolUsePolicyParams,
    checker=ToolUsePolicyChecker,
    role_instructions=ROLE_INSTRUCTIONS,
    live_state=False,
)

__all__ = ["DOMAIN", "ToolUsePolicyChecker", "ToolUsePolicyParams", "ToolUseState", "ToolUseTools"]
