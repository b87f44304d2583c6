"""The support desk's written policy and the checker of its rules.

The agent reads :data:`POLICY_TEXT`; the tools do not enforce it. :class:`SupportPolicyChecker`
records every broken rule with the call that broke it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trajgym.world.base import PolicyChecker, Violation
from trajgym.world.customer_support.models import SupportState
from trajgym.world.tools import ToolResult

POLICY_TEXT = """\
Acme Outfitters support policy.
1. Identity: before you change anything on an account or an order (refund, exchange, cancel,
   address change), verify the customer's identity with verify_identity (email and ZIP code).
   If they cannot be verified, do not make the change; say why.
2. Refunds: an order can be refunded only within {refund_window_days} days of its delivery. Past
   that window, politely refuse and say that the window is {refund_window_days} days.
3. Large refunds: a refund above ${approval_above:.2f} needs a supervisor's approval first
   (request_supervisor_approval). Never refund more than was paid.
4. Cancellation: an order can be cancelled only before it ships (status placed or processing).
   A shipped order cannot be cancelled; it can be refunded after delivery.
5. Exchanges: within {exchange_window_days} days of delivery, for another variant in stock.
6. Systems: if a system fails, retry; if it keeps failing, tell the customer and transfer the
   case to a human colleague with transfer_to_human. Never guess at data you could not read.
7. Always tell the customer what you did, with the amounts, and end politely.
"""

ACCOUNT_WRITES = {
    "refund_order", "exchange_item", "cancel_order", "update_shipping_address",
    "update_customer_address",
}


class SupportPolicyParams(BaseModel):
    """Parameters of the policy's checkable rules, set per scenario under ``policy.rules``."""

    model_config = ConfigDict(extra="forbid")

    refund_window_days: int = Field(default=30, ge=0)
    exchange_window_days: int = Field(default=30, ge=0)
    approval_above: float = Field(default=200.0, ge=0)
    verify_before_changes: bool = True
    cancel_only_before_shipping: bool = True


class SupportPolicyChecker(PolicyChecker[SupportState, SupportPolicyParams]):
    """Rules: verify_before_changes, refund_window, approval_above, cancel_only_before_shipping,
    exchange_window."""

    def __init__(self, params: SupportPolicyParams) -> None:
        super().__init__(params)
        self.verified: set[str] = set()

    def rules(self) -> list[str]:
        p = self.params
        return [name for name, on in (("verify_before_changes", p.verify_before_changes), ("refund_window", True),
                                      ("approval_above", True),
                                      ("cancel_only_before_shipping", p.cancel_only_before_shipping),
                                      ("exchange_window", True)) if on]

    def _customer_of(self, tool: str, args: dict[str, Any], state: SupportState) -> str | None:
        if tool == "update_customer_address":
            return str(args.get("customer_id"))
        order = state.orders.get(str(args.get("order_id")))
        return order.customer_id if order else None

    def before_call(self, role: str, tool: str, args: dict[str, Any], state: SupportState) -> list[Violation]:
        if tool not in ACCOUNT_WRITES:
            return []
        p = self.params
        out: list[Violation] = []
        customer = self._customer_of(tool, args, state)
        if p.verify_before_changes and customer is not None and customer not in self.verified:
            out.append(Violation("verify_before_changes",
                                 f"{tool} on customer {customer}'s account before verifying identity"))
        order = state.orders.get(str(args.get("order_id")))
        if order is None:
            return out
        age = (state.today - order.delivered_on).days if order.delivered_on else None
        if tool == "refund_order":
            if age is not None and age > p.refund_window_days:
                out.append(Violation("refund_window",
                                     f"refund {age} days after delivery (window {p.refund_window_days})"))
            amount = float(args.get("amount", 0) or 0)
            if amount > p.approval_above + 0.005:
                approved = any(a.order_id == args.get("order_id") and a.status == "approved"
                               and a.amount >= amount - 0.005 for a in state.approvals.values())
                if not approved:
                    out.append(Violation("approval_above",
                                         f"refund of {amount:.2f} above {p.approval_above:.2f} without approval"))
        elif tool == "cancel_order" and p.cancel_only_before_shipping and order.status not in ("placed", "processing"):
            out.append(Violation("cancel_only_before_shipping", f"cancelled an order that is {order.status}"))
        elif tool == "exchange_item" and age is not None and age > p.exchange_window_days:
            out.append(Violation("exchange_window",
                                 f"exchange {age} days after delivery (window {p.exchange_window_days})"))
        return out

    def after_call(self, role: str, tool: str, args: dict[str, Any], result: ToolResult, state: SupportState) -> None:
        if tool == "verify_identity" and result.ok and isinstance(result.content, dict) and result.content.get("verified"):
            self.verified.add(str(args.get("customer_id")))
