"""Signed actions on the chain: who the signer acts for (itself, its master, a vault), the nonce
rule, expiry; API wallets; and the devnet's controls."""

from __future__ import annotations

import pytest

from protocol.actions import (
    ApproveAgentAction,
    CreateSubAccountAction,
    CreateSubAccountResponse,
    DefaultResponse,
    ErrorResponse,
    FundAction,
    NoopAction,
    OrderAction,
    OrderResponse,
    SetOraclePriceAction,
    SignedAction,
    SnapshotAction,
    UsdSendAction,
    UserAction,
)
from protocol.agents import MAX_NAMED_AGENTS, AgentBook
from protocol.chain import Action, Chain, ExecutedAction
from protocol.markets import Markets
from protocol.orders import Resting
from protocol.state_hash import GENESIS_HASH, state_hash
from tests.protocol.conftest import BTC, USD, limit

T = 1_700_000_000_000
MASTER = "0x" + "1" * 40
AGENT = "0x" + "2" * 40
STRANGER = "0x" + "3" * 40


def signed(
    action: UserAction,
    nonce: int = T,
    vault_address: str | None = None,
    expires_after: int | None = None,
) -> SignedAction:
    return SignedAction(action, nonce, vault_address, expires_after)


def buy() -> OrderAction:
    return OrderAction((limit(BTC, True, "50000", "0.01"),))


@pytest.fixture
def chain(markets: Markets) -> Chain:
    chain = Chain(markets, start_time=T)
    chain.deposit(MASTER, 100_000 * USD, T)
    return chain


def run(chain: Chain, signer: str, action: Action, time: int = T) -> ExecutedAction:
    [executed] = chain.apply_block(1, time, [(signer, action)]).actions
    return executed


def test_a_user_acts_for_itself(chain: Chain) -> None:
    executed = run(chain, MASTER, signed(buy()))
    assert executed.user == MASTER and executed.action == buy()
    assert executed.response == OrderResponse((Resting(1),))


def test_an_unknown_signer_is_refused_without_using_its_nonce(chain: Chain) -> None:
    executed = run(chain, STRANGER, signed(buy()))
    assert executed.response == ErrorResponse(f"User or API Wallet {STRANGER} does not exist.")
    assert chain.nonces.snapshot().signers == ()


def test_a_nonce_is_used_once(chain: Chain) -> None:
    assert run(chain, MASTER, signed(buy())).response == OrderResponse((Resting(1),))
    again = run(chain, MASTER, signed(buy()), time=T + 1)
    assert again.response == ErrorResponse(f"Invalid nonce: duplicate nonce {T}")
    assert len(chain.exchange.books[BTC].orders) == 1  # the refused order changed nothing


def test_an_expired_action_is_refused(chain: Chain) -> None:
    late = run(chain, MASTER, signed(buy(), expires_after=T - 1))
    assert late.response == ErrorResponse(f"Action expired at {T - 1}, block time {T}.")
    assert run(chain, MASTER, signed(buy(), nonce=T + 1, expires_after=T)).response == (
        OrderResponse((Resting(1),))
    )


def test_an_agent_trades_for_its_master_but_cannot_send_its_funds(chain: Chain) -> None:
    approve = ApproveAgentAction(agent_address=AGENT.upper().replace("0X", "0x"), nonce=T)
    assert run(chain, MASTER, signed(approve)).response == DefaultResponse()
    order = run(chain, AGENT, signed(buy(), nonce=T + 1))
    assert order.user == MASTER and order.response == OrderResponse((Resting(1),))
    assert chain.exchange.books[BTC].orders[1].user == MASTER
    # A user-signed action acts for its signer: the agent's own account, which is empty.
    send = UsdSendAction(destination=STRANGER, amount="1", time=T + 2)
    refused = run(chain, AGENT, signed(send, nonce=T + 2))
    assert refused.response == ErrorResponse(f"User or API Wallet {AGENT} does not exist.")


def test_a_vault_address_acts_for_a_sub_account_of_the_master(chain: Chain) -> None:
    created = run(chain, MASTER, signed(CreateSubAccountAction("desk")))
    assert isinstance(created.response, CreateSubAccountResponse)
    sub = created.response.address
    chain.deposit(sub, 1_000 * USD, T)
    order = run(chain, MASTER, signed(buy(), nonce=T + 1, vault_address=sub.upper()[2:]))
    assert order.response == ErrorResponse(f"Vault not registered: {sub.upper()[2:].lower()}")
    order = run(chain, MASTER, signed(buy(), nonce=T + 2, vault_address=sub))
    assert order.user == sub and order.response == OrderResponse((Resting(1),))
    other = run(chain, MASTER, signed(buy(), nonce=T + 3, vault_address=STRANGER))
    assert other.response == ErrorResponse(f"Vault not registered: {STRANGER}")


def test_agent_names_replace_and_are_limited() -> None:
    book = AgentBook()
    agents = [f"0x{i:040x}" for i in range(1, 10)]
    assert book.approve(MASTER, agents[0], None) is None
    assert book.approve(MASTER, agents[1], None) is None  # replaces the unnamed one
    assert [a.address for a in book.agents_of(MASTER)] == [agents[1]]
    for i in range(MAX_NAMED_AGENTS):
        assert book.approve(MASTER, agents[2 + i], f"bot{i}") is None
    assert book.approve(MASTER, agents[8], "one more") == ErrorResponse("Too many extra agents.")
    assert book.approve(MASTER, agents[8], "bot0") is None  # same name: replaces bot0
    assert book.master_of(agents[2]) is None and book.master_of(agents[8]) == MASTER
    assert book.approve(MASTER, MASTER, "me") == ErrorResponse("Cannot approve self as agent.")
    assert book.approve(MASTER, "0x12", "x") == ErrorResponse("Invalid agent address.")
    book._check()


def test_devnet_controls_set_the_oracle_and_fund(markets: Markets) -> None:
    chain = Chain(markets, start_time=T)
    [price, usdc, hype, bad] = chain.apply_block(
        1,
        T,
        [
            ("devnet", SetOraclePriceAction("BTC", "123456")),
            ("devnet", FundAction(STRANGER.upper().replace("0X", "0x"), "USDC", "2.5")),
            ("devnet", FundAction(STRANGER, "HYPE", "3")),
            ("devnet", SetOraclePriceAction("PURR/USDC", "1")),
        ],
    ).actions
    assert price.response == usdc.response == hype.response == DefaultResponse()
    assert chain.oracle.price(BTC) == 1_234_560  # 1 price decimal for BTC
    account = chain.clearinghouse.accounts[STRANGER]
    assert account.usd == 2_500_000
    hype_token = markets.token_by_name("HYPE")
    assert hype_token is not None
    assert account.spot_total[hype_token.index] == 3 * 10**hype_token.wei_decimals
    assert bad.response == ErrorResponse("Unknown perp 'PURR/USDC'.")


def test_agents_nonces_and_devnet_snapshots_are_in_the_state_hash(markets: Markets) -> None:
    """Each of these changes only its own part of the state: the hash must see it."""

    def digest_after(actions: list[tuple[str, Action]]) -> bytes:
        chain = Chain(markets, start_time=T)
        chain.deposit(MASTER, 100_000 * USD, T)
        chain.apply_block(1, T, actions)
        return state_hash(chain, GENESIS_HASH)

    plain = digest_after([(MASTER, NoopAction())])
    approve = ApproveAgentAction(agent_address=AGENT, nonce=T)
    assert digest_after([(MASTER, approve)]) != plain  # unsigned: no nonce kept
    assert digest_after([(MASTER, signed(NoopAction()))]) != plain  # a nonce is kept
    assert digest_after([("devnet", SnapshotAction())]) != plain
