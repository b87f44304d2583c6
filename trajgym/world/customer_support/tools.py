"""The support desk's tools. Each docstring is the schema the agent sees.

Tools keep the world's physical invariants (no refund larger than what was paid, no exchange for a
variant out of stock) but never the written policy: an agent can break the policy, and the policy
checker records it.
"""

from __future__ import annotations

from typing import Any, Literal

from trajgym.errors import ToolCallError
from trajgym.world.customer_support.models import (
    Address,
    Approval,
    Order,
    SentMessage,
    SupportState,
    Ticket,
)
from trajgym.world.tools import ToolKit, tool

RefundReason = Literal["damaged", "wrong_item", "not_as_described", "late", "changed_mind", "other"]


def _not_found(kind: str, ident: str) -> ToolCallError:
    return ToolCallError(f"{kind} '{ident}' not found", error_type="not_found")


class SupportTools(ToolKit):
    """Tools of the support agent and the supervisor."""

    state: SupportState

    def _order(self, order_id: str) -> Order:
        order = self.state.orders.get(order_id)
        if order is None:
            raise _not_found("order", order_id)
        return order

    def _order_view(self, order_id: str, order: Order) -> dict[str, Any]:
        view = order.model_dump(mode="json")
        view["order_id"] = order_id
        view["total"] = order.total
        return view

    @tool("read")
    def find_customer(self, email: str | None = None, phone: str | None = None,
                      name: str | None = None) -> list[dict[str, Any]]:
        """Find customers by email, phone or full name (give at least one).

        Args:
            email: Email address, matched exactly (case-insensitive).
            phone: Phone number, matched exactly.
            name: Full name, matched case-insensitively.
        """
        if not (email or phone or name):
            raise ToolCallError("give at least one of email, phone or name")
        hits = []
        for cid, c in self.state.customers.items():
            if ((email and c.email.lower() == email.strip().lower())
                    or (phone and c.phone == phone.strip())
                    or (name and c.name.lower() == name.strip().lower())):
                hits.append({"customer_id": cid, "name": c.name})
        return hits

    @tool("read")
    def verify_identity(self, customer_id: str, email: str, zip: str) -> dict[str, Any]:
        """Check that the person you are talking to owns the account (email and ZIP code).

        Args:
            customer_id: The customer id, e.g. "C1".
            email: The email address the person gave.
            zip: The ZIP code the person gave.
        """
        c = self.state.customers.get(customer_id)
        if c is None:
            raise _not_found("customer", customer_id)
        ok = c.email.lower() == email.strip().lower() and c.zip == zip.strip()
        return {"customer_id": customer_id, "verified": ok}

    @tool("read")
    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """Get a customer's profile: name, contact details, address, tier.

        Args:
            customer_id: The customer id, e.g. "C1".
        """
        c = self.state.customers.get(customer_id)
        if c is None:
            raise _not_found("customer", customer_id)
        return {"customer_id": customer_id, **c.model_dump(mode="json")}

    @tool("read")
    def list_orders(self, customer_id: str) -> list[dict[str, Any]]:
        """List a customer's orders, newest first, with status, date and total.

        Args:
            customer_id: The customer id, e.g. "C1".
        """
        if customer_id not in self.state.customers:
            raise _not_found("customer", customer_id)
        rows = [
            {"order_id": oid, "status": o.status, "placed_on": o.placed_on.isoformat(),
             "total": o.total, "items": [i.name for i in o.items]}
            for oid, o in self.state.orders.items() if o.customer_id == customer_id
        ]
        return sorted(rows, key=lambda r: (r["placed_on"], r["order_id"]), reverse=True)

    @tool("read")
    def get_order(self, order_id: str) -> dict[str, Any]:
        """Get an order: items, status, dates, payment, shipping address, amount refunded.

        Args:
            order_id: The order id, e.g. "O1".
        """
        return self._order_view(order_id, self._order(order_id))

    @tool("read")
    def track_shipment(self, order_id: str) -> dict[str, Any]:
        """Get the shipping status and tracking number of an order.

        Args:
            order_id: The order id, e.g. "O1".
        """
        o = self._order(order_id)
        return {"order_id": order_id, "status": o.status, "tracking": o.tracking,
                "delivered_on": o.delivered_on.isoformat() if o.delivered_on else None}

    @tool("read")
    def get_payment(self, payment_id: str) -> dict[str, Any]:
        """Get a payment: method, amount charged and amount refunded so far.

        Args:
            payment_id: The payment id, e.g. "P1".
        """
        p = self.state.payments.get(payment_id)
        if p is None:
            raise _not_found("payment", payment_id)
        return {"payment_id": payment_id, **p.model_dump(mode="json")}

    @tool("read")
    def get_product(self, sku: str) -> dict[str, Any]:
        """Get a catalogue product: name, price and the stock of each variant.

        Args:
            sku: The product's SKU.
        """
        p = self.state.catalog.get(sku)
        if p is None:
            raise _not_found("product", sku)
        return {"sku": sku, **p.model_dump(mode="json")}

    @tool("write", verify="get_order")
    def refund_order(self, order_id: str, amount: float, reason: RefundReason) -> dict[str, Any]:
        """Refund part or all of an order to its original payment method.

        Args:
            order_id: The order id.
            amount: Amount to refund, at most what was paid and not yet refunded.
            reason: Why the refund is given.
        """
        o = self._order(order_id)
        if o.status == "cancelled":
            raise ToolCallError(f"order {order_id} is cancelled; its payment was already returned")
        left = round(o.total - o.refunded_amount, 2)
        if amount <= 0 or amount > left + 0.005:
            raise ToolCallError(f"amount must be > 0 and at most {left:.2f} (paid and not refunded)")
        o.refunded_amount = round(o.refunded_amount + amount, 2)
        pay = self.state.payments[o.payment_id]
        pay.refunded = round(pay.refunded + amount, 2)
        o.status = "refunded" if o.refunded_amount >= o.total - 0.005 else "partially_refunded"
        if o.status == "refunded":
            for item in o.items:
                item.status = "refunded"
        return {"order_id": order_id, "refunded": amount, "total_refunded": o.refunded_amount,
                "status": o.status, "reason": reason}

    @tool("write", verify="get_order")
    def exchange_item(self, order_id: str, sku: str, new_variant: str) -> dict[str, Any]:
        """Exchange one item of an order for another variant (size, colour) of the same product.

        Args:
            order_id: The order id.
            sku: SKU of the item to exchange.
            new_variant: The variant wanted instead, e.g. "M" or "blue".
        """
        o = self._order(order_id)
        item = next((i for i in o.items if i.sku == sku and i.status == "ok"), None)
        if item is None:
            raise _not_found(f"exchangeable item in order {order_id} with sku", sku)
        product = self.state.catalog.get(sku)
        if product is None or product.stock.get(new_variant, 0) <= 0:
            raise ToolCallError(f"variant '{new_variant}' of {sku} is out of stock", error_type="out_of_stock")
        product.stock[new_variant] -= 1
        old = item.variant
        item.variant = new_variant
        item.status = "exchanged"
        return {"order_id": order_id, "sku": sku, "old_variant": old, "new_variant": new_variant}

    @tool("write", verify="get_order")
    def cancel_order(self, order_id: str, reason: str) -> dict[str, Any]:
        """Cancel an order and return its payment in full.

        Args:
            order_id: The order id.
            reason: Why the order is cancelled.
        """
        o = self._order(order_id)
        if o.status in ("cancelled", "refunded"):
            raise ToolCallError(f"order {order_id} is already {o.status}")
        left = round(o.total - o.refunded_amount, 2)
        o.status = "cancelled"
        o.refunded_amount = o.total
        self.state.payments[o.payment_id].refunded += left
        return {"order_id": order_id, "status": "cancelled", "refunded": left, "reason": reason}

    @tool("write", verify="get_order")
    def update_shipping_address(self, order_id: str, line1: str, city: str, zip: str) -> dict[str, Any]:
        """Change where an order will be shipped.

        Args:
            order_id: The order id.
            line1: Street and number.
            city: City.
            zip: ZIP code.
        """
        o = self._order(order_id)
        o.shipping_address = Address(line1=line1, city=city, zip=zip, country=o.shipping_address.country)
        return {"order_id": order_id, "shipping_address": o.shipping_address.model_dump()}

    @tool("write", verify="get_customer")
    def update_customer_address(self, customer_id: str, line1: str, city: str, zip: str) -> dict[str, Any]:
        """Change a customer's address on file (future orders ship there).

        Args:
            customer_id: The customer id.
            line1: Street and number.
            city: City.
            zip: ZIP code.
        """
        c = self.state.customers.get(customer_id)
        if c is None:
            raise _not_found("customer", customer_id)
        c.address = Address(line1=line1, city=city, zip=zip, country=c.address.country)
        c.zip = zip
        return {"customer_id": customer_id, "address": c.address.model_dump()}

    @tool("write", handoff="supervisor")
    def request_supervisor_approval(self, order_id: str, amount: float, reason: str) -> dict[str, Any]:
        """Ask the supervisor to approve an action on an order; the supervisor answers next.

        Args:
            order_id: The order the request is about.
            amount: The amount to approve (e.g. of a refund).
            reason: Why the approval is needed.
        """
        self._order(order_id)
        approval_id = f"A{len(self.state.approvals) + 1}"
        self.state.approvals[approval_id] = Approval(order_id=order_id, amount=amount, reason=reason)
        return {"approval_id": approval_id, "status": "pending"}

    @tool("read")
    def get_approval(self, approval_id: str) -> dict[str, Any]:
        """Get the state of an approval request.

        Args:
            approval_id: The approval id, e.g. "A1".
        """
        a = self.state.approvals.get(approval_id)
        if a is None:
            raise _not_found("approval", approval_id)
        return {"approval_id": approval_id, **a.model_dump()}

    @tool("write")
    def decide_approval(self, approval_id: str, approve: bool, note: str) -> dict[str, Any]:
        """Approve or deny a pending approval request (supervisor only).

        Args:
            approval_id: The approval id, e.g. "A1".
            approve: True to approve, false to deny.
            note: A short reason for the decision.
        """
        a = self.state.approvals.get(approval_id)
        if a is None:
            raise _not_found("approval", approval_id)
        if a.status != "pending":
            raise ToolCallError(f"approval {approval_id} was already {a.status}")
        a.status = "approved" if approve else "denied"
        a.note = note
        return {"approval_id": approval_id, "status": a.status}

    @tool("write")
    def create_ticket(self, subject: str, note: str, customer_id: str | None = None) -> dict[str, Any]:
        """Open a ticket so the case is followed up later.

        Args:
            subject: One line that says what the case is.
            note: What happened and what is left to do.
            customer_id: The customer the ticket is about, if known.
        """
        if customer_id is not None and customer_id not in self.state.customers:
            raise _not_found("customer", customer_id)
        ticket_id = f"T{len(self.state.tickets) + 1}"
        self.state.tickets[ticket_id] = Ticket(customer_id=customer_id, subject=subject, notes=[note])
        return {"ticket_id": ticket_id, "status": "open"}

    @tool("write")
    def escalate_ticket(self, ticket_id: str, note: str) -> dict[str, Any]:
        """Escalate a ticket to the second-level team.

        Args:
            ticket_id: The ticket id, e.g. "T1".
            note: Why it is escalated.
        """
        t = self.state.tickets.get(ticket_id)
        if t is None:
            raise _not_found("ticket", ticket_id)
        t.status = "escalated"
        t.notes.append(note)
        return {"ticket_id": ticket_id, "status": t.status}

    @tool("write")
    def send_message(self, customer_id: str, channel: Literal["email", "sms"], text: str) -> dict[str, Any]:
        """Send the customer an email or SMS (e.g. a confirmation they can keep).

        Args:
            customer_id: The customer id.
            channel: "email" or "sms".
            text: The message.
        """
        if customer_id not in self.state.customers:
            raise _not_found("customer", customer_id)
        self.state.outbox.append(SentMessage(customer_id=customer_id, channel=channel, text=text))
        return {"sent": True, "channel": channel}

    @staticmethod
    def effect_visible(tool: str, args: dict[str, Any], read: Any) -> bool:
        """Whether ``read`` (the result of the tool's ``verify`` read) shows that write ``tool``
        with ``args`` took effect. Used to recover from a timed-out write without repeating it."""
        if not isinstance(read, dict):
            return False
        if tool == "refund_order":
            return float(read.get("refunded_amount", 0) or 0) >= float(args.get("amount", 0)) - 0.005
        if tool == "cancel_order":
            return read.get("status") == "cancelled"
        if tool == "exchange_item":
            return any(i.get("sku") == args.get("sku") and i.get("variant") == args.get("new_variant")
                       for i in read.get("items", []))
        if tool == "update_shipping_address":
            return (read.get("shipping_address") or {}).get("line1") == args.get("line1")
        if tool == "update_customer_address":
            return (read.get("address") or {}).get("line1") == args.get("line1")
        return False
