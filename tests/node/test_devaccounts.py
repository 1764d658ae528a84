"""Dev accounts: the well-known Anvil/Hardhat keys, funded at genesis the same way every time."""

from __future__ import annotations

from pathlib import Path

from node.chainstore import new_chain
from node.config import load_config
from node.devaccounts import ANVIL_MNEMONIC, derive_accounts
from protocol.liquidation import LIQUIDATOR
from protocol.portfolio_margin import PM_LIQUIDATOR
from protocol.state_hash import chain_snapshot

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"


def test_anvil_accounts() -> None:
    """The mnemonic gives Anvil's first accounts and keys (published by Foundry)."""
    accounts = derive_accounts(ANVIL_MNEMONIC, 10)
    assert len(accounts) == 10
    assert accounts[0].address == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    assert accounts[0].private_key == (
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    )
    assert accounts[1].address == "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
    assert accounts[9].address == "0xa0ee7a142d267c1f36714e4a8f75612f20a79720"


def test_genesis_funding() -> None:
    """Every dev account gets the configured perp USDC and spot tokens; both liquidators get
    USDC; two chains built from the same config agree."""
    config = load_config(CONFIG)
    chain = new_chain(config, 1_700_000_000_000)
    again = new_chain(config, 1_700_000_000_000)
    first = chain.clearinghouse.accounts["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"]
    assert first.usd == 1_000_000 * 10**6
    assert first.spot_total == {
        0: 1_000_000 * 10**8,
        1: 1_000_000 * 10**5,
        2: 10_000 * 10**8,
        3: 10 * 10**10,
    }
    assert chain.clearinghouse.accounts[LIQUIDATOR].usd == 100_000_000 * 10**6
    assert chain.clearinghouse.accounts[PM_LIQUIDATOR].spot_total[0] == 100_000_000 * 10**8
    assert chain_snapshot(chain) == chain_snapshot(again)
