"""The devnet's well-known accounts and what the genesis gives them.

Invariants:
- The dev accounts are the first `count` accounts of the configured mnemonic on the standard
  Ethereum path m/44'/60'/0'/0/i (by default the mnemonic of Anvil and Hardhat, so its keys are
  the ones every tool already knows); addresses are lower-case, as the protocol keeps them.
- Genesis funding is a pure function of the config: resuming and replaying give every account
  the same balances at height 0.
"""

from __future__ import annotations

import msgspec
from eth_account import Account

from protocol.chain import Chain
from protocol.fixed import parse_fixed
from protocol.liquidation import LIQUIDATOR
from protocol.markets import ConfigError
from protocol.portfolio_margin import PM_LIQUIDATOR

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_SPOT = {"USDC": "1000000", "HYPE": "10000", "UBTC": "10", "PURR": "1000000"}


class DevAccountsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[dev_accounts]` table: amounts are decimal strings in token units."""

    mnemonic: str = ANVIL_MNEMONIC
    count: int = 10
    perp_usdc: str = "1000000"
    spot: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_SPOT))
    liquidator_usdc: str = "100000000"


class DevAccount(msgspec.Struct, frozen=True):
    address: str
    private_key: str


def derive_accounts(mnemonic: str, count: int) -> list[DevAccount]:
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        account = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        accounts.append(
            DevAccount(account.address.lower(), "0x" + account.key.hex().removeprefix("0x"))
        )
    return accounts


def fund_genesis(chain: Chain, spec: DevAccountsSpec, accounts: list[DevAccount]) -> None:
    """Credit every dev account with perp USDC and spot tokens, and both liquidators with
    USDC (the standard one on perps, the portfolio-margin one on spot, where it repays the
    debts it takes over)."""
    markets = chain.markets
    perp = _amount(spec.perp_usdc, 6, "dev_accounts.perp_usdc")
    liquidator = _amount(spec.liquidator_usdc, 6, "dev_accounts.liquidator_usdc")
    spot: list[tuple[int, int]] = []
    for name, text in sorted(spec.spot.items()):
        token = markets.token_by_name(name)
        if token is None:
            raise ConfigError(f"dev_accounts.spot: unknown token {name!r}")
        spot.append((token.index, _amount(text, token.wei_decimals, f"dev_accounts.spot.{name}")))
    time = chain.mark_time
    for account in accounts:
        if perp:
            chain.deposit(account.address, perp, time)
        for token_index, wei in spot:
            chain.clearinghouse.credit_spot(account.address, token_index, wei)
    if liquidator:
        chain.deposit(LIQUIDATOR, liquidator, time)
        usdc = chain.clearinghouse.usdc_token
        if usdc >= 0:
            chain.clearinghouse.credit_spot(PM_LIQUIDATOR, usdc, liquidator * 100)


def _amount(text: str, decimals: int, where: str) -> int:
    value = parse_fixed(text, decimals)
    if value is None or value < 0:
        raise ConfigError(f"{where}: {text!r} is not an amount with <= {decimals} decimals")
    return value
