"""Conversation-control tools every domain offers: ending the chat, asking for a human."""

from __future__ import annotations

from typing import Any

from trajgym.world.tools import ToolKit, tool

# tool name -> the termination reason it causes
ENDINGS = {
    "end_conversation": "customer_ended",
    "request_human": "customer_requested_human",
    "transfer_to_human": "transferred_to_human",
}


class ControlTools(ToolKit):
    """Tools that act on the conversation rather than on the world."""

    @tool("read")
    def end_conversation(self, reason: str = "") -> dict[str, Any]:
        """End the conversation (customer): your request is handled, or you are done.

        Args:
            reason: Optional few words on why.
        """
        return {"ended": True}

    @tool("read")
    def request_human(self, reason: str = "") -> dict[str, Any]:
        """Ask to talk to a human instead (customer); ends this chat.

        Args:
            reason: Optional few words on why.
        """
        return {"ended": True}

    @tool("write")
    def transfer_to_human(self, summary: str) -> dict[str, Any]:
        """Transfer the case to a human colleague (support); ends this chat.

        Args:
            summary: What the colleague needs to know to take over.
        """
        return {"transferred": True}
