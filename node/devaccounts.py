"""The devnet's well-known accounts and what the genesis gives them.

Invariants:
- The dev accounts are the first `count` accounts of the configured mnemonic on the standard
  Ethereum path m/44'/60'/0'/0/i (by default the mnemonic of Anvil and Hardhat, so its keys are
  the ones every tool already knows); addresses are lower-case, as the protocol keeps them.
- The table is parsed once, exactly, when the config is loaded; applying it is
  `protocol.genesis.fund_genesis`.
"""

from __future__ import annotations

import functools

import msgspec
from eth_account import Account

from protocol.fixed import USD_DECIMALS, parse_fixed
from protocol.genesis import AccountFunding, GenesisFunding
from protocol.markets import ConfigError, Markets

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


@functools.cache
def derive_accounts(mnemonic: str, count: int) -> tuple[DevAccount, ...]:
    """Derived once per process (key derivation is slow on purpose)."""
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        account = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        accounts.append(
            DevAccount(account.address.lower(), "0x" + account.key.hex().removeprefix("0x"))
        )
    return tuple(accounts)


class DevFunding(msgspec.Struct, frozen=True):
    """The `[dev_accounts]` amounts, parsed: micro-USDC and (token index, wei)."""

    perp_usdc: int
    spot: tuple[tuple[int, int], ...]
    liquidator_usdc: int


def parse_funding(spec: DevAccountsSpec, markets: Markets) -> DevFunding:
    """The amounts of the table, exactly; ConfigError names a bad one."""
    return DevFunding(
        parse_amount(spec.perp_usdc, USD_DECIMALS, "dev_accounts.perp_usdc"),
        parse_spot_amounts(spec.spot, markets, "dev_accounts.spot"),
        parse_amount(spec.liquidator_usdc, USD_DECIMALS, "dev_accounts.liquidator_usdc"),
    )


def parse_spot_amounts(
    spot: dict[str, str], markets: Markets, where: str
) -> tuple[tuple[int, int], ...]:
    """Token name -> amount in token units, as (token index, wei) in name order."""
    amounts: list[tuple[int, int]] = []
    for name, text in sorted(spot.items()):
        token = markets.token_by_name(name)
        if token is None:
            raise ConfigError(f"{where}: unknown token {name!r}")
        amounts.append((token.index, parse_amount(text, token.wei_decimals, f"{where}.{name}")))
    return tuple(amounts)


def genesis_funding(
    spec: DevAccountsSpec, markets: Markets, others: tuple[AccountFunding, ...] = ()
) -> GenesisFunding:
    """The protocol's genesis funding for the dev accounts the table describes, and `others`."""
    funding = parse_funding(spec, markets)
    addresses = tuple(a.address for a in derive_accounts(spec.mnemonic, spec.count))
    return GenesisFunding(
        addresses, funding.perp_usdc, funding.spot, funding.liquidator_usdc, others
    )


def parse_amount(text: str, decimals: int, where: str) -> int:
    value = parse_fixed(text, decimals)
    if value is None or value < 0:
        raise ConfigError(f"{where}: {text!r} is not an amount with <= {decimals} decimals")
    return value
