"""Agents: the interface, the scripted ones, and a registry by name."""

from __future__ import annotations

from collections.abc import Callable

from trajgym.agents.base import Agent, AgentContext
from trajgym.agents.chat import ChatAgent
from trajgym.agents.customer import ScriptedCustomer
from trajgym.agents.hf_agent import HFAgent
from trajgym.agents.llm_customer import LLMCustomer
from trajgym.agents.openai_agent import OpenAIAgent
from trajgym.agents.oracle import OracleAgent
from trajgym.agents.random_agent import RandomAgent
from trajgym.agents.supervisor import ScriptedSupervisor
from trajgym.registry import lookup

AGENTS: dict[str, Callable[[], Agent]] = {
    "hf": HFAgent,
    "llm_customer": LLMCustomer,
    "openai": OpenAIAgent,
    "oracle": OracleAgent,
    "random": RandomAgent,
    "scripted_customer": ScriptedCustomer,
    "scripted_supervisor": ScriptedSupervisor,
}

# who plays a role nobody else was given
DEFAULT_FOR_ROLE = {"support": "oracle", "customer": "scripted_customer", "supervisor": "scripted_supervisor"}


def make_agent(name: str) -> Agent:
    """A new agent from the registry; a clear error with a suggestion for an unknown name."""
    return lookup(AGENTS, name, what="agent")()


def default_agent(role: str) -> Agent:
    return make_agent(DEFAULT_FOR_ROLE[role])


__all__ = ["AGENTS", "Agent", "AgentContext", "ChatAgent", "HFAgent", "LLMCustomer", "OpenAIAgent", "OracleAgent", "RandomAgent", "ScriptedCustomer",
           "ScriptedSupervisor", "default_agent", "make_agent"]
