"""The customer-support world's state: customers, orders, items, payments, tickets, approvals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal[
    "placed", "processing", "shipped", "delivered", "cancelled", "refunded", "partially_refunded"
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(Strict):
    line1: str
    city: str
    zip: str
    country: str = "US"


class Customer(Strict):
    name: str
    email: str
    zip: str
    address: Address
    phone: str | None = None
    tier: Literal["standard", "gold"] = "standard"


class Item(Strict):
    sku: str
    name: str
    price: float = Field(ge=0)
    qty: int = Field(default=1, ge=1)
    variant: str | None = None
    status: Literal["ok", "refunded", "exchanged"] = "ok"


class Order(Strict):
    customer_id: str
    status: OrderStatus
    placed_on: dt.date
    delivered_on: dt.date | None = None
    items: list[Item] = Field(min_length=1)
    payment_id: str
    shipping_address: Address
    tracking: str | None = None
    refunded_amount: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(i.price * i.qty for i in self.items), 2)


class Payment(Strict):
    method: Literal["card", "paypal", "gift_card"]
    amount: float = Field(ge=0)
    last4: str | None = None
    refunded: float = 0.0


class Product(Strict):
    """A catalogue entry: variants (sizes, colours) with the units in stock."""

    name: str
    price: float = Field(ge=0)
    stock: dict[str, int] = Field(default_factory=dict)


class Ticket(Strict):
    customer_id: str | None
    subject: str
    status: Literal["open", "escalated", "closed"] = "open"
    notes: list[str] = Field(default_factory=list)


class Approval(Strict):
    order_id: str
    amount: float
    reason: str
    status: Literal["pending", "approved", "denied"] = "pending"
    note: str | None = None


class SentMessage(Strict):
    customer_id: str
    channel: Literal["email", "sms"]
    text: str


class SupportState(Strict):
    """The whole world. ``today`` is the simulated date the policy's windows count from."""

    today: dt.date
    customers: dict[str, Customer]
    orders: dict[str, Order] = Field(default_factory=dict)
    payments: dict[str, Payment] = Field(default_factory=dict)
    catalog: dict[str, Product] = Field(default_factory=dict)
    tickets: dict[str, Ticket] = Field(default_factory=dict)
    approvals: dict[str, Approval] = Field(default_factory=dict)
    outbox: list[SentMessage] = Field(default_factory=list)

    def entity_problems(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """References between entities that point at nothing."""
        for oid, order in self.orders.items():
            if order.customer_id not in self.customers:
                yield ("orders", oid, "customer_id"), _missing("customer", order.customer_id, self.customers)
            if order.payment_id not in self.payments:
                yield ("orders", oid, "payment_id"), _missing("payment", order.payment_id, self.payments)
            for i, item in enumerate(order.items):
                if self.catalog and item.sku not in self.catalog:
                    yield ("orders", oid, "items", i, "sku"), _missing("catalog sku", item.sku, self.catalog)
        for tid, ticket in self.tickets.items():
            if ticket.customer_id is not None and ticket.customer_id not in self.customers:
                yield ("tickets", tid, "customer_id"), _missing("customer", ticket.customer_id, self.customers)
        for aid, approval in self.approvals.items():
            if approval.order_id not in self.orders:
                yield ("approvals", aid, "order_id"), _missing("order", approval.order_id, self.orders)


def _missing(what: str, ref: str, known: Mapping[str, object]) -> str:
    names = ", ".join(sorted(known)[:8]) or "none"
    return f"{what} '{ref}' does not exist (defined: {names})"
