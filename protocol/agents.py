"""API wallets (agents) and whom the signer of an action acts for.

Invariants:
- An agent address serves one master at a time; a master holds at most one unnamed agent and
  `MAX_NAMED_AGENTS` named ones. Approving an agent under a name the master already uses (or a
  second unnamed one) replaces the old agent, which stops acting at once.
- An agent signs L1 actions for its master; actions that move funds or approve agents are
  user-signed and act for the signer itself (so an agent signing one acts for its own empty
  account, as Hyperliquid's docs say agents cannot transfer or withdraw).
- Every structure iterates in a defined order (masters and agents by address) for the state
  hash.
"""

from __future__ import annotations

import msgspec

from protocol.actions import ErrorResponse
from protocol.transfers import normalize_address

MAX_NAMED_AGENTS = 3


class Agent(msgspec.Struct, frozen=True):
    address: str
    master: str
    name: str  # "" for the unnamed agent


class AgentsSnapshot(msgspec.Struct, frozen=True):
    agents: tuple[Agent, ...]  # by agent address


class AgentBook:
    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}  # agent address -> agent

    def approve(self, master: str, address: str, name: str | None) -> ErrorResponse | None:
        """`address` (any case) becomes `master`'s agent under `name`."""
        normalized = normalize_address(address)
        if normalized is None:
            return ErrorResponse("Invalid agent address.")
        address = normalized
        if address == master:
            return ErrorResponse("Cannot approve self as agent.")
        name = name or ""
        mine = [a for a in self.agents.values() if a.master == master]
        replaced = [a for a in mine if a.name == name]
        named = sum(1 for a in mine if a.name)
        if name and not replaced and named >= MAX_NAMED_AGENTS:
            return ErrorResponse("Too many extra agents.")
        for old in replaced:
            del self.agents[old.address]
        self.agents[address] = Agent(address, master, name)  # an agent serves one master
        return None

    def master_of(self, address: str) -> str | None:
        agent = self.agents.get(address)
        return None if agent is None else agent.master

    def agents_of(self, master: str) -> list[Agent]:
        return sorted((a for a in self.agents.values() if a.master == master), key=_by_address)

    def snapshot(self) -> AgentsSnapshot:
        return AgentsSnapshot(tuple(sorted(self.agents.values(), key=_by_address)))

    def _check(self) -> None:
        for address, agent in self.agents.items():
            assert agent.address == address == normalize_address(address), f"bad agent {address}"
            assert agent.master != address, f"agent {address} is its own master"
        pairs = [(a.master, a.name) for a in self.agents.values()]
        assert len(pairs) == len(set(pairs)), "two agents of one master share a name"


def _by_address(agent: Agent) -> str:
    return agent.address
