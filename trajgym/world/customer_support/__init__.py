"""The customer-support desk: customers, orders, refunds, exchanges, approvals, a written policy."""

from trajgym.world.base import Domain
from trajgym.world.customer_support.models import SupportState
from trajgym.world.customer_support.policy import (
    POLICY_TEXT,
    SupportPolicyChecker,
    SupportPolicyParams,
)
from trajgym.world.customer_support.tools import SupportTools

ROLE_INSTRUCTIONS = {
    "support": (
        "You are a support agent at Acme Outfitters, chatting with a customer. Follow the policy "
        "below. Use the tools to look things up and act; answer the customer with a plain message "
        "(no tool call) when you need them to reply. If you cannot help, transfer_to_human.\n\n"
        "{policy}"
    ),
    "customer": (
        "You are {name}, a customer of Acme Outfitters, chatting with its support desk. You are "
        "{mood}. Your request: {opening}\nWhat you know, and say only when asked:\n{facts}\n"
        "When your request is handled, call end_conversation; if you give up, call request_human."
    ),
    "supervisor": (
        "You are the support supervisor at Acme Outfitters. Support agents ask you to approve "
        "actions. Approve requests up to ${limit:.2f} that follow the policy, deny others, with "
        "decide_approval, then tell the agent your decision.\n\n{policy}"
    ),
}

DOMAIN = Domain(
    name="customer_support",
    state_model=SupportState,
    toolkit=SupportTools,
    policy_text=POLICY_TEXT,
    policy_params=SupportPolicyParams,
    checker=SupportPolicyChecker,
    role_instructions=ROLE_INSTRUCTIONS,
)

__all__ = ["DOMAIN", "SupportPolicyChecker", "SupportPolicyParams", "SupportState", "SupportTools"]
