"""Transfers through `Chain.execute`: usdClassTransfer, usdSend, spotSend, withdraw3, sendAsset,
createSubAccount, subAccountTransfer and subAccountSpotTransfer.

Units: perp USDC is micro-USDC (10**6 per USDC), spot USDC wei 10**8 per USDC (so one micro is
100 wei), PURR wei 10**5 per PURR. Every refusal is checked to leave the whole chain byte for byte
as it was (`fingerprint`) with no ledger update; every success to add exactly one.
"""

from __future__ import annotations

import hashlib
import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.actions import (
    ActionResponse,
    CreateSubAccountAction,
    CreateSubAccountResponse,
    DefaultResponse,
    ErrorResponse,
    OrderAction,
    OrderResponse,
    SendAssetAction,
    SpotSendAction,
    SubAccountSpotTransferAction,
    SubAccountTransferAction,
    UpdateIsolatedMarginAction,
    UpdateLeverageAction,
    UsdClassTransferAction,
    UsdSendAction,
    UserAction,
    Withdraw3Action,
)
from protocol.chain import Chain
from protocol.ledger import (
    AccountClassTransfer,
    InternalTransfer,
    LedgerUpdate,
    Send,
    SpotTransfer,
    SubAccountTransfer,
    Withdraw,
)
from protocol.transfers import (
    ERR_ADDRESS,
    ERR_AMOUNT,
    ERR_DEX,
    ERR_NOT_SUB_ACCOUNT,
    ERR_PERP_TOKEN,
    ERR_SPOT_BALANCE,
    ERR_SUB_ACCOUNT_MASTER,
    ERR_SUB_ACCOUNT_NAME,
    ERR_TOKEN,
    ERR_TOO_MANY_SUB_ACCOUNTS,
    ERR_WITHDRAW_FEE,
    ERR_WITHDRAWABLE,
)
from tests.protocol.conftest import (
    BTC,
    HYPE_TOKEN,
    PURR_TOKEN,
    PURR_USDC,
    USD,
    USDC_TOKEN,
    default_markets,
    limit,
)
from tests.protocol.conftest import fingerprint as exchange_fingerprint

T = 1_700_000_000_000
WEI = 10**8  # spot USDC wei per USDC
PURR = 10**5  # PURR wei per PURR
A = "0x" + "1a" * 20  # not 0xaaaa...aaaa, the backstop liquidator
B = "0x" + "b" * 40
C = "0x" + "c" * 40  # never funded
USDC_SPEC = "USDC:0xeb62eee3685fc4c43992febcd9e75443"
PURR_SPEC = "PURR:0xc4bf3f870c0e9465323c0b6ed28096c2"
HYPE_SPEC = "HYPE:0x7317beb7cceed72ef0b346074cc8e7ab"


# Helpers shared with test_clearinghouse.py and test_leverage.py.

# Not state, or state reached by another path: the genesis markets (the same in every state)
# and the clearinghouse's link to the portfolio-margin engine (which points back at it).
SKIPPED = frozenset({"markets", "portfolio"})


def _plain(value: object) -> object:
    """A msgpack-encodable copy of `value`: objects and structs become field lists, dicts
    become pair lists in their insertion order (so even a re-ordering shows). SKIPPED
    attributes are left out."""
    if isinstance(value, msgspec.Struct):
        return [type(value).__name__, _plain(msgspec.structs.asdict(value))]
    if isinstance(value, dict):
        return [[_plain(k), _plain(v)] for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | str | bool | float) or value is None:
        return value
    slots = getattr(type(value), "__slots__", None)
    names = list(slots) if slots is not None else list(vars(value))
    return [
        type(value).__name__,
        [[name, _plain(getattr(value, name))] for name in names if name not in SKIPPED],
    ]


def fingerprint(chain: Chain) -> bytes:
    """The whole chain state an action could change: every clearinghouse field (accounts with
    cash, positions, leverage, reserves, spot totals and holds; sub-accounts; withdrawn and
    withdrawal fees; trading fees; marks), the exchange (books, ids, orders), the ledger, and
    the chain's price, funding and liquidation state."""
    state = [
        _plain(chain.clearinghouse),
        exchange_fingerprint(chain.exchange),
        _plain(chain.ledger),
        _plain(chain.marks),
        chain.mark_time,
        _plain(chain.funding),
        _plain(chain.oracle),
        _plain(getattr(chain.liquidator, "last_partial", None)),
    ]
    return msgspec.msgpack.encode(state)


def new_chain() -> Chain:
    """A and B each hold 10,000 USDC on perps and 10,000 USDC, 1,000 PURR, 10 HYPE on spot."""
    chain = Chain(default_markets())
    clearinghouse = chain.clearinghouse
    for user in (A, B):
        clearinghouse.credit_usd(user, 10_000 * USD)
        clearinghouse.credit_spot(user, USDC_TOKEN, 10_000 * WEI)
        clearinghouse.credit_spot(user, PURR_TOKEN, 1_000 * PURR)
        clearinghouse.credit_spot(user, HYPE_TOKEN, 10 * WEI)
    return chain


def ok(chain: Chain, user: str, action: UserAction) -> LedgerUpdate:
    """Run a transfer that must succeed; returns its one ledger update."""
    before = len(chain.ledger)
    assert chain.execute(user, action, T) == DefaultResponse()
    assert len(chain.ledger) == before + 1
    chain._check()
    return chain.ledger[-1]


def refused(chain: Chain, user: str, action: UserAction, error: str) -> None:
    """Run an action that must be refused with `error` and change nothing at all."""
    before = fingerprint(chain)
    assert chain.execute(user, action, T) == ErrorResponse(error)
    assert fingerprint(chain) == before


def make_sub(chain: Chain, master: str, name: str) -> str:
    response = chain.execute(master, CreateSubAccountAction(name), T)
    assert isinstance(response, CreateSubAccountResponse), response
    return response.address


def sub_address(counter: int, master: str) -> str:
    """The documented derivation: a hash of the chain-wide sub-account counter and the master."""
    return "0x" + hashlib.sha256(f"sub-account:{counter}:{master}".encode()).hexdigest()[:40]


def usd(chain: Chain, user: str) -> int:
    return chain.clearinghouse.accounts[user].usd


def spot(chain: Chain, user: str, token: int) -> int:
    return chain.clearinghouse.accounts[user].spot_total.get(token, 0)


def usdc_supply_wei(chain: Chain) -> int:
    """All USDC the chain has seen, in spot wei: perp cash (cross and isolated legs), spot USDC,
    what was withdrawn, withdrawal fees, perp trading fees and spot fees paid in USDC."""
    clearinghouse = chain.clearinghouse
    micro = clearinghouse.withdrawn + clearinghouse.withdraw_fees + clearinghouse.perp_fees
    wei = clearinghouse.spot_fees.get(USDC_TOKEN, 0)
    for account in clearinghouse.accounts.values():
        micro += account.usd + sum(p.isolated_raw for p in account.positions.values())
        wei += account.spot_total.get(USDC_TOKEN, 0)
    return micro * 100 + wei


# usdClassTransfer.


def test_class_transfer_to_spot_converts_micro_to_wei() -> None:
    """1234.567891 USDC leaves perps as 1_234_567_891 micro and arrives as 123_456_789_100 wei."""
    chain = new_chain()
    update = ok(chain, A, UsdClassTransferAction("1234.567891", to_perp=False))
    assert usd(chain, A) == 10_000 * USD - 1_234_567_891
    assert spot(chain, A, USDC_TOKEN) == 10_000 * WEI + 123_456_789_100
    assert update == LedgerUpdate(T, (A,), AccountClassTransfer(1_234_567_891, False))
    assert usd(chain, B) == 10_000 * USD  # nobody else moves


def test_class_transfer_to_perp_converts_wei_to_micro() -> None:
    """One micro-USDC to perps costs exactly 100 spot wei; trailing zeros past 6 decimals are
    fine, a nonzero 7th or 8th decimal (finer than perp precision) is refused."""
    chain = new_chain()
    update = ok(chain, A, UsdClassTransferAction("0.000001", to_perp=True))
    assert usd(chain, A) == 10_000 * USD + 1
    assert spot(chain, A, USDC_TOKEN) == 10_000 * WEI - 100
    assert update == LedgerUpdate(T, (A,), AccountClassTransfer(1, True))
    ok(chain, A, UsdClassTransferAction("2.50000000", to_perp=True))
    assert usd(chain, A) == 10_000 * USD + 1 + 2_500_000
    assert spot(chain, A, USDC_TOKEN) == 10_000 * WEI - 100 - 250_000_000
    for text in ("0.0000001", "0.00000001", "1.00000001"):
        for to_perp in (True, False):
            refused(chain, A, UsdClassTransferAction(text, to_perp), ERR_AMOUNT)


def test_class_transfer_limits() -> None:
    """To perps: at most the free spot USDC (a resting buy's hold does not count); to spot: at
    most withdrawable. The exact limit passes, one micro more does not."""
    chain = new_chain()
    refused(chain, A, UsdClassTransferAction("10000.000001", to_perp=True), ERR_SPOT_BALANCE)
    refused(chain, A, UsdClassTransferAction("10000.000001", to_perp=False), ERR_WITHDRAWABLE)
    # A resting PURR buy of 1000 at 0.5 holds 500 USDC = 500 * 10**8 wei.
    response = chain.execute(A, OrderAction((limit(PURR_USDC, True, "0.5", "1000"),)), T)
    assert isinstance(response, OrderResponse)
    assert chain.clearinghouse.accounts[A].spot_hold[USDC_TOKEN] == 500 * WEI
    refused(chain, A, UsdClassTransferAction("9500.000001", to_perp=True), ERR_SPOT_BALANCE)
    ok(chain, A, UsdClassTransferAction("9500", to_perp=True))
    assert spot(chain, A, USDC_TOKEN) == 500 * WEI
    assert usd(chain, A) == 19_500 * USD
    ok(chain, A, UsdClassTransferAction("19500", to_perp=False))
    assert usd(chain, A) == 0
    assert spot(chain, A, USDC_TOKEN) == 20_000 * WEI
    refused(chain, A, UsdClassTransferAction("0.000001", to_perp=False), ERR_WITHDRAWABLE)


def test_class_transfer_for_a_sub_account() -> None:
    """`amount subaccount:0x...` moves the sub-account's own USDC between its perp and spot
    sides; the master's balances do not change and the update names the sub-account."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    ok(chain, A, SubAccountTransferAction(sub, is_deposit=True, usd=100 * USD))
    update = ok(chain, A, UsdClassTransferAction(f"40.5 subaccount:{sub}", to_perp=False))
    assert update == LedgerUpdate(T, (sub,), AccountClassTransfer(40_500_000, False))
    assert (usd(chain, sub), spot(chain, sub, USDC_TOKEN)) == (59_500_000, 4_050_000_000)
    assert (usd(chain, A), spot(chain, A, USDC_TOKEN)) == (9_900 * USD, 10_000 * WEI)
    # The address may come in upper case; the sub-account's spot side funds the way back.
    ok(chain, A, UsdClassTransferAction(f"0.5 subaccount:{sub.upper()}", to_perp=True))
    assert (usd(chain, sub), spot(chain, sub, USDC_TOKEN)) == (60 * USD, 40 * WEI)
    refused(chain, A, UsdClassTransferAction(f"40.000001 subaccount:{sub}", True), ERR_SPOT_BALANCE)
    refused(
        chain, A, UsdClassTransferAction(f"60.000001 subaccount:{sub}", False), ERR_WITHDRAWABLE
    )


def test_class_transfer_suffix_refusals() -> None:
    """Someone else's sub-account, a plain address, or a malformed suffix are refused."""
    chain = new_chain()
    theirs = make_sub(chain, B, "beta")
    mine = make_sub(chain, A, "alpha")
    ok(chain, A, SubAccountTransferAction(mine, is_deposit=True, usd=10 * USD))
    ok(chain, B, SubAccountTransferAction(theirs, is_deposit=True, usd=10 * USD))
    refused(chain, A, UsdClassTransferAction(f"1 subaccount:{theirs}", False), ERR_NOT_SUB_ACCOUNT)
    refused(chain, A, UsdClassTransferAction(f"1 subaccount:{B}", False), ERR_NOT_SUB_ACCOUNT)
    refused(chain, A, UsdClassTransferAction(f"1 subaccount:{A}", False), ERR_NOT_SUB_ACCOUNT)
    for text in (
        f"1 subaccount:{mine[:-1]}",
        f"1 vault:{mine}",
        f"1 subaccount{mine}",
        f"1  subaccount:{mine}",
        f"1 Subaccount:{mine}",
        "1 2",
        " 1",
    ):
        refused(chain, A, UsdClassTransferAction(text, False), ERR_AMOUNT)


# usdSend.


def test_usd_send_moves_perp_usdc() -> None:
    """25.5 USDC leaves A's perp cash and arrives in B's; spot balances are untouched."""
    chain = new_chain()
    update = ok(chain, A, UsdSendAction(B, "25.5"))
    assert (usd(chain, A), usd(chain, B)) == (10_000 * USD - 25_500_000, 10_000 * USD + 25_500_000)
    assert spot(chain, A, USDC_TOKEN) == spot(chain, B, USDC_TOKEN) == 10_000 * WEI
    assert update == LedgerUpdate(T, (A, B), InternalTransfer(25_500_000, A, B, 0))


def test_usd_send_to_a_new_mixed_case_address() -> None:
    """A destination in mixed case is the lower-cased account; a new address gets an account."""
    chain = new_chain()
    mixed = "0x" + "C" * 20 + "c" * 20
    update = ok(chain, A, UsdSendAction(mixed, "10000"))
    assert update.users == (A, C)
    assert usd(chain, C) == 10_000 * USD
    assert usd(chain, A) == 0
    assert mixed not in chain.clearinghouse.accounts


def test_usd_send_refusals() -> None:
    """Malformed destinations and amounts beyond withdrawable are refused."""
    chain = new_chain()
    for destination in (
        "",
        "0x",
        "0x123",
        B[2:],
        "0x" + "b" * 39,
        "0x" + "b" * 41,
        "0x" + "g" * 40,
        " " + B,
        B + " ",
        "1x" + "b" * 40,
    ):
        refused(chain, A, UsdSendAction(destination, "1"), ERR_ADDRESS)
    refused(chain, A, UsdSendAction(B, "10000.000001"), ERR_WITHDRAWABLE)


# spotSend.


def test_spot_send_purr() -> None:
    """12.34567 PURR is 1_234_567 wei (5 decimals); it moves between spot balances only."""
    chain = new_chain()
    update = ok(chain, A, SpotSendAction(B, PURR_SPEC, "12.34567"))
    assert spot(chain, A, PURR_TOKEN) == 1_000 * PURR - 1_234_567
    assert spot(chain, B, PURR_TOKEN) == 1_000 * PURR + 1_234_567
    assert update == LedgerUpdate(T, (A, B), SpotTransfer("PURR", 1_234_567, A, B, 0))
    assert usd(chain, A) == usd(chain, B) == 10_000 * USD
    # The token id may come in upper case; the whole balance can go to a new address.
    ok(chain, A, SpotSendAction(C, PURR_SPEC.upper().replace("PURR:0X", "PURR:0x"), "987.65433"))
    assert spot(chain, A, PURR_TOKEN) == 0
    assert spot(chain, C, PURR_TOKEN) == 98_765_433


def test_spot_send_usdc_and_hype_use_8_decimals() -> None:
    """USDC and HYPE amounts on spot have 8 decimals; perp cash does not move."""
    chain = new_chain()
    update = ok(chain, A, SpotSendAction(B, USDC_SPEC, "0.00000001"))
    assert update.delta == SpotTransfer("USDC", 1, A, B, 0)
    assert spot(chain, B, USDC_TOKEN) == 10_000 * WEI + 1
    ok(chain, A, SpotSendAction(B, HYPE_SPEC, "2.5"))
    assert (spot(chain, A, HYPE_TOKEN), spot(chain, B, HYPE_TOKEN)) == (750_000_000, 1_250_000_000)
    assert usd(chain, A) == usd(chain, B) == 10_000 * USD


def test_spot_send_refusals() -> None:
    """A wrong or missing token id, an unknown name, too many decimals, a bad destination, more
    than the free balance (holds count) are refused."""
    chain = new_chain()
    wrong_id = "PURR:0x" + "0" * 32
    for token in (
        wrong_id,
        "PURR",
        "PURR:",
        "purr:0xc4bf3f870c0e9465323c0b6ed28096c2",
        "HYPE:0xc4bf3f870c0e9465323c0b6ed28096c2",
        "DOGE:0xc4bf3f870c0e9465323c0b6ed28096c2",
        "PURR:0xc4bf3f870c0e9465323c0b6ed28096c2:x",
        "",
    ):
        refused(chain, A, SpotSendAction(B, token, "1"), ERR_TOKEN)
    refused(chain, A, SpotSendAction(B, PURR_SPEC, "0.000001"), ERR_AMOUNT)  # 6 > 5 decimals
    refused(chain, A, SpotSendAction("0x" + "b" * 39, PURR_SPEC, "1"), ERR_ADDRESS)
    refused(chain, A, SpotSendAction(B, PURR_SPEC, "1000.00001"), ERR_SPOT_BALANCE)
    # A resting sell of 400 PURR holds 400 PURR of the 1000.
    response = chain.execute(A, OrderAction((limit(PURR_USDC, False, "1", "400"),)), T)
    assert isinstance(response, OrderResponse)
    refused(chain, A, SpotSendAction(B, PURR_SPEC, "600.00001"), ERR_SPOT_BALANCE)
    ok(chain, A, SpotSendAction(B, PURR_SPEC, "600"))
    assert spot(chain, A, PURR_TOKEN) == chain.clearinghouse.accounts[A].spot_hold[PURR_TOKEN]


# withdraw3.


def test_withdraw_charges_one_usdc_fee() -> None:
    """Withdrawing 10 USDC debits 10, sends 9 off the chain and keeps 1 as the fee; the nonce
    is the action's time."""
    chain = new_chain()
    update = ok(chain, A, Withdraw3Action(B, "10", time=1234))
    assert usd(chain, A) == 9_990 * USD
    assert (chain.clearinghouse.withdrawn, chain.clearinghouse.withdraw_fees) == (9 * USD, USD)
    assert update == LedgerUpdate(T, (A,), Withdraw(10 * USD, 1234, USD))
    assert usd(chain, B) == 10_000 * USD  # the destination is an address off the chain
    # The smallest withdrawal: one micro above the fee.
    ok(chain, A, Withdraw3Action(A, "1.000001"))
    assert chain.clearinghouse.withdrawn == 9 * USD + 1
    assert chain.clearinghouse.withdraw_fees == 2 * USD
    assert usd(chain, A) == 9_990 * USD - 1_000_001


def test_withdraw_refusals() -> None:
    """Amounts at or below the fee, a bad destination, more than withdrawable are refused."""
    chain = new_chain()
    for text in ("1", "0.999999", "0.000001", "1.000000"):
        refused(chain, A, Withdraw3Action(B, text), ERR_WITHDRAW_FEE)
    refused(chain, A, Withdraw3Action("0xb", "5"), ERR_ADDRESS)
    refused(chain, A, Withdraw3Action(B, "10000.000001"), ERR_WITHDRAWABLE)
    ok(chain, A, Withdraw3Action(B, "10000"))
    assert usd(chain, A) == 0
    assert chain.clearinghouse.withdrawn == 9_999 * USD


# sendAsset.


def test_send_asset_between_own_perp_and_spot() -> None:
    """perp -> spot and spot -> perp for oneself are class transfers recorded as `send`."""
    chain = new_chain()
    update = ok(chain, A, SendAssetAction(A, "", "spot", USDC_SPEC, "3.000001"))
    # Send amounts are in the token's wei whichever side moved: USDC wei has 8 decimals.
    assert update == LedgerUpdate(T, (A,), Send(A, A, "", "spot", "USDC", 300_000_100, 0))
    assert usd(chain, A) == 10_000 * USD - 3_000_001
    assert spot(chain, A, USDC_TOKEN) == 10_000 * WEI + 300_000_100
    update = ok(chain, A, SendAssetAction(A, "spot", "", USDC_SPEC, "10003.000001"))
    assert update.delta == Send(A, A, "spot", "", "USDC", 1_000_300_000_100, 0)
    assert usd(chain, A) == 20_000 * USD
    assert spot(chain, A, USDC_TOKEN) == 0


@pytest.mark.parametrize(
    ("source_dex", "destination_dex", "a_usd", "a_spot", "b_usd", "b_spot"),
    [
        # 7.25 USDC = 7_250_000 micro = 725_000_000 wei.
        ("", "", -7_250_000, 0, 7_250_000, 0),
        ("", "spot", -7_250_000, 0, 0, 725_000_000),
        ("spot", "", 0, -725_000_000, 7_250_000, 0),
        ("spot", "spot", 0, -725_000_000, 0, 725_000_000),
    ],
)
def test_send_asset_usdc_to_another_user(
    source_dex: str, destination_dex: str, a_usd: int, a_spot: int, b_usd: int, b_spot: int
) -> None:
    """7.25 USDC from A's source side to B's destination side, every route; the ledger amount
    is in USDC wei (8 decimals) on every route."""
    chain = new_chain()
    update = ok(chain, A, SendAssetAction(B, source_dex, destination_dex, USDC_SPEC, "7.25"))
    assert usd(chain, A) - 10_000 * USD == a_usd
    assert spot(chain, A, USDC_TOKEN) - 10_000 * WEI == a_spot
    assert usd(chain, B) - 10_000 * USD == b_usd
    assert spot(chain, B, USDC_TOKEN) - 10_000 * WEI == b_spot
    assert update == LedgerUpdate(
        T, (A, B), Send(A, B, source_dex, destination_dex, "USDC", 725_000_000, 0)
    )


def test_send_asset_spot_token_to_another_user() -> None:
    """A non-USDC token moves spot -> spot in its own wei."""
    chain = new_chain()
    update = ok(chain, A, SendAssetAction(B, "spot", "spot", PURR_SPEC, "0.5"))
    assert update.delta == Send(A, B, "spot", "spot", "PURR", 50_000, 0)
    assert (spot(chain, A, PURR_TOKEN), spot(chain, B, PURR_TOKEN)) == (99_950_000, 100_050_000)


def test_send_asset_from_a_sub_account() -> None:
    """The master sends from its sub-account's perp cash to B's spot; the update names the
    sub-account and B, and the master's balances do not move."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    ok(chain, A, SubAccountTransferAction(sub, is_deposit=True, usd=50 * USD))
    update = ok(chain, A, SendAssetAction(B, "", "spot", USDC_SPEC, "20", from_sub_account=sub))
    assert update == LedgerUpdate(T, (sub, B), Send(sub, B, "", "spot", "USDC", 20 * WEI, 0))
    assert usd(chain, sub) == 30 * USD
    assert spot(chain, sub, USDC_TOKEN) == 0
    assert spot(chain, B, USDC_TOKEN) == 10_020 * WEI
    assert (usd(chain, A), spot(chain, A, USDC_TOKEN)) == (9_950 * USD, 10_000 * WEI)
    # Back to the master's own perp account, named in upper case.
    update = ok(chain, A, SendAssetAction(A, "", "", USDC_SPEC, "30", from_sub_account=sub.upper()))
    assert update.users == (sub, A)
    assert (usd(chain, sub), usd(chain, A)) == (0, 9_980 * USD)
    action = SendAssetAction(A, "", "", USDC_SPEC, "0.000001", from_sub_account=sub)
    refused(chain, A, action, ERR_WITHDRAWABLE)


def test_send_asset_refusals() -> None:
    """Non-USDC into or out of perps, unknown dexes and tokens, someone else's sub-account, bad
    destinations and amounts beyond the balance are refused."""
    chain = new_chain()
    theirs = make_sub(chain, B, "beta")
    refused(chain, A, SendAssetAction(B, "spot", "", PURR_SPEC, "1"), ERR_PERP_TOKEN)
    refused(chain, A, SendAssetAction(B, "", "spot", PURR_SPEC, "1"), ERR_PERP_TOKEN)
    refused(chain, A, SendAssetAction(B, "", "", HYPE_SPEC, "1"), ERR_PERP_TOKEN)
    for source_dex, destination_dex in (("xyz", ""), ("", "xyz"), ("perp", "spot"), ("SPOT", "")):
        refused(chain, A, SendAssetAction(B, source_dex, destination_dex, USDC_SPEC, "1"), ERR_DEX)
    refused(chain, A, SendAssetAction(B, "spot", "spot", "PURR:0x" + "1" * 32, "1"), ERR_TOKEN)
    refused(chain, A, SendAssetAction("0xb", "", "", USDC_SPEC, "1"), ERR_ADDRESS)
    for source in (theirs, B, A, "0x12"):
        action = SendAssetAction(B, "", "", USDC_SPEC, "1", from_sub_account=source)
        refused(chain, A, action, ERR_NOT_SUB_ACCOUNT)
    # Perp amounts have 6 decimals even though the token is spot USDC with 8.
    refused(chain, A, SendAssetAction(B, "", "spot", USDC_SPEC, "0.00000001"), ERR_AMOUNT)
    refused(chain, A, SendAssetAction(B, "spot", "", USDC_SPEC, "0.0000001"), ERR_AMOUNT)
    refused(chain, A, SendAssetAction(B, "spot", "spot", PURR_SPEC, "0.000001"), ERR_AMOUNT)
    refused(chain, A, SendAssetAction(B, "", "spot", USDC_SPEC, "10000.000001"), ERR_WITHDRAWABLE)
    refused(chain, A, SendAssetAction(B, "", "", USDC_SPEC, "10000.000001"), ERR_WITHDRAWABLE)
    refused(chain, A, SendAssetAction(B, "spot", "", USDC_SPEC, "10000.000001"), ERR_SPOT_BALANCE)
    action = SendAssetAction(B, "spot", "spot", USDC_SPEC, "10000.00000001")
    refused(chain, A, action, ERR_SPOT_BALANCE)
    refused(chain, A, SendAssetAction(B, "spot", "spot", PURR_SPEC, "1000.00001"), ERR_SPOT_BALANCE)


# Sub-accounts.


def test_create_sub_account_address_is_deterministic() -> None:
    """Addresses come from the chain-wide counter and the master, so the same actions give the
    same addresses on every replay; creating one records no ledger update and opens an empty
    account."""
    chain = new_chain()
    first = make_sub(chain, A, "one")
    second = make_sub(chain, B, "one")
    third = make_sub(chain, A, "two")
    assert (first, second, third) == (sub_address(0, A), sub_address(1, B), sub_address(2, A))
    assert len({first, second, third}) == 3
    assert chain.ledger == []
    assert [s.address for s in chain.clearinghouse.sub_accounts_of(A)] == [first, third]
    assert [s.name for s in chain.clearinghouse.sub_accounts_of(A)] == ["one", "two"]
    assert chain.clearinghouse.master_of(second) == B
    assert chain.clearinghouse.master_of(B) is None
    assert usd(chain, first) == 0
    replay = new_chain()
    assert [make_sub(replay, A, "one"), make_sub(replay, B, "one"), make_sub(replay, A, "two")] == [
        first,
        second,
        third,
    ]
    assert fingerprint(replay) == fingerprint(chain)


def test_sub_account_names() -> None:
    """Names are 1 to 16 characters and unique per master (case-sensitive); another master may
    reuse one."""
    chain = new_chain()
    make_sub(chain, A, "x" * 16)
    make_sub(chain, A, "a")
    make_sub(chain, A, "A")
    make_sub(chain, B, "a")
    for name in ("", "x" * 17, "x" * 16, "a"):
        refused(chain, A, CreateSubAccountAction(name), ERR_SUB_ACCOUNT_NAME)


def test_at_most_ten_sub_accounts() -> None:
    """The eleventh sub-account of a master is refused; other masters are not affected."""
    chain = new_chain()
    for i in range(10):
        make_sub(chain, A, f"s{i}")
    refused(chain, A, CreateSubAccountAction("s10"), ERR_TOO_MANY_SUB_ACCOUNTS)
    assert len(chain.clearinghouse.sub_accounts_of(A)) == 10
    # The counter is chain-wide: B's first sub-account is the eleventh ever created.
    assert make_sub(chain, B, "s0") == sub_address(10, B)


def test_sub_account_cannot_create_sub_account() -> None:
    """A sub-account is not a master."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    refused(chain, sub, CreateSubAccountAction("nested"), ERR_SUB_ACCOUNT_MASTER)


def test_sub_account_transfer_both_ways() -> None:
    """Deposits move the master's perp cash to the sub-account's, withdrawals move it back;
    both updates name master and sub-account."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    update = ok(chain, A, SubAccountTransferAction(sub, is_deposit=True, usd=1_500_000))
    assert update == LedgerUpdate(T, (A, sub), SubAccountTransfer(1_500_000, A, sub))
    assert (usd(chain, A), usd(chain, sub)) == (10_000 * USD - 1_500_000, 1_500_000)
    update = ok(chain, A, SubAccountTransferAction(sub.upper(), is_deposit=False, usd=500_001))
    assert update == LedgerUpdate(T, (A, sub), SubAccountTransfer(500_001, sub, A))
    assert (usd(chain, A), usd(chain, sub)) == (10_000 * USD - 999_999, 999_999)
    assert spot(chain, sub, USDC_TOKEN) == 0


def test_sub_account_transfer_refusals() -> None:
    """Not my sub-account, a non-positive amount, or more than the withdrawable of the side
    that pays is refused."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    theirs = make_sub(chain, B, "beta")
    ok(chain, A, SubAccountTransferAction(sub, is_deposit=True, usd=5 * USD))
    for target in (theirs, B, A, "0x12", sub[:-1]):
        for is_deposit in (True, False):
            action = SubAccountTransferAction(target, is_deposit, USD)
            refused(chain, A, action, ERR_NOT_SUB_ACCOUNT)
    refused(chain, sub, SubAccountTransferAction(sub, True, USD), ERR_NOT_SUB_ACCOUNT)
    for amount in (0, -1, -5 * USD):
        refused(chain, A, SubAccountTransferAction(sub, True, amount), ERR_AMOUNT)
        refused(chain, A, SubAccountTransferAction(sub, False, amount), ERR_AMOUNT)
    refused(chain, A, SubAccountTransferAction(sub, False, 5 * USD + 1), ERR_WITHDRAWABLE)
    refused(chain, A, SubAccountTransferAction(sub, True, 9_995 * USD + 1), ERR_WITHDRAWABLE)


def test_sub_account_spot_transfer_both_ways() -> None:
    """Spot tokens move between master and sub-account; perp cash does not."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    update = ok(chain, A, SubAccountSpotTransferAction(sub, True, PURR_SPEC, "250.5"))
    assert update == LedgerUpdate(T, (A, sub), SpotTransfer("PURR", 25_050_000, A, sub, 0))
    update = ok(chain, A, SubAccountSpotTransferAction(sub, False, PURR_SPEC, "0.00001"))
    assert update == LedgerUpdate(T, (A, sub), SpotTransfer("PURR", 1, sub, A, 0))
    assert spot(chain, sub, PURR_TOKEN) == 25_049_999
    assert spot(chain, A, PURR_TOKEN) == 1_000 * PURR - 25_049_999
    ok(chain, A, SubAccountSpotTransferAction(sub, True, USDC_SPEC, "0.12345678"))
    assert spot(chain, sub, USDC_TOKEN) == 12_345_678
    assert usd(chain, sub) == 0
    assert usd(chain, A) == 10_000 * USD


def test_sub_account_spot_transfer_refusals() -> None:
    """Not my sub-account, wrong token, bad amount or more than the free balance is refused."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    theirs = make_sub(chain, B, "beta")
    ok(chain, A, SubAccountSpotTransferAction(sub, True, PURR_SPEC, "10"))
    refused(
        chain, A, SubAccountSpotTransferAction(theirs, True, PURR_SPEC, "1"), ERR_NOT_SUB_ACCOUNT
    )
    refused(chain, A, SubAccountSpotTransferAction(B, False, PURR_SPEC, "1"), ERR_NOT_SUB_ACCOUNT)
    refused(chain, A, SubAccountSpotTransferAction(sub, True, "PURR:0x1", "1"), ERR_TOKEN)
    refused(chain, A, SubAccountSpotTransferAction(sub, True, PURR_SPEC, "0.000001"), ERR_AMOUNT)
    refused(
        chain, A, SubAccountSpotTransferAction(sub, False, PURR_SPEC, "10.00001"), ERR_SPOT_BALANCE
    )
    refused(
        chain, A, SubAccountSpotTransferAction(sub, True, PURR_SPEC, "990.00001"), ERR_SPOT_BALANCE
    )


GARBAGE_AMOUNTS = [
    "",
    "0",
    "0.0",
    "-0",
    "-1",
    "-0.5",
    "abc",
    "1e3",
    "0x10",
    "1,5",
    "nan",
    "inf",
    "1.2.3",
    ".",
    "--1",
    "1_000",
    "٣",  # a non-ASCII digit
    "9" * 65,
]


@pytest.mark.parametrize("text", GARBAGE_AMOUNTS)
def test_garbage_amounts_are_refused_everywhere(text: str) -> None:
    """Zero, negative and non-decimal amounts are refused by every transfer that takes one."""
    chain = new_chain()
    sub = make_sub(chain, A, "alpha")
    actions: list[UserAction] = [
        UsdClassTransferAction(text, to_perp=True),
        UsdClassTransferAction(text, to_perp=False),
        UsdClassTransferAction(f"{text} subaccount:{sub}", to_perp=False),
        UsdSendAction(B, text),
        SpotSendAction(B, PURR_SPEC, text),
        SpotSendAction(B, USDC_SPEC, text),
        Withdraw3Action(B, text),
        SendAssetAction(B, "", "spot", USDC_SPEC, text),
        SendAssetAction(B, "spot", "spot", PURR_SPEC, text),
        SubAccountSpotTransferAction(sub, True, PURR_SPEC, text),
    ]
    for action in actions:
        refused(chain, A, action, ERR_AMOUNT)


def test_block_output_carries_the_ledger() -> None:
    """`apply_block` hands out the block's ledger updates in execution order and starts the
    next block with an empty ledger; refused transfers add nothing."""
    chain = new_chain()
    output = chain.apply_block(
        1,
        T,
        [
            (A, UsdSendAction(B, "1")),
            (A, UsdSendAction(B, "1000000")),  # refused
            (B, Withdraw3Action(B, "2")),
            (A, SpotSendAction(B, PURR_SPEC, "1")),
        ],
    )
    assert [type(e.response) for e in output.actions] == [
        DefaultResponse,
        ErrorResponse,
        DefaultResponse,
        DefaultResponse,
    ]
    assert output.ledger == (
        LedgerUpdate(T, (A, B), InternalTransfer(USD, A, B, 0)),
        LedgerUpdate(T, (B,), Withdraw(2 * USD, 0, USD)),
        LedgerUpdate(T, (A, B), SpotTransfer("PURR", PURR, A, B, 0)),
    )
    assert chain.ledger == []
    assert chain.apply_block(2, T + 1, []).ledger == ()


def test_self_sends_move_nothing() -> None:
    """Sending to oneself succeeds and leaves every balance where it was."""
    chain = new_chain()
    before = (usd(chain, A), spot(chain, A, USDC_TOKEN), spot(chain, A, PURR_TOKEN))
    ok(chain, A, UsdSendAction(A, "5"))
    ok(chain, A, SpotSendAction(A, PURR_SPEC, "5"))
    ok(chain, A, SendAssetAction(A, "", "", USDC_SPEC, "5"))
    ok(chain, A, SendAssetAction(A, "spot", "spot", PURR_SPEC, "5"))
    assert (usd(chain, A), spot(chain, A, USDC_TOKEN), spot(chain, A, PURR_TOKEN)) == before


def test_self_send_names_the_user_once() -> None:
    """A ledger update names each account it touched once, as sendAsset's does."""
    chain = new_chain()
    assert ok(chain, A, SendAssetAction(A, "", "", USDC_SPEC, "5")).users == (A,)
    assert ok(chain, A, UsdSendAction(A, "5")).users == (A,)
    assert ok(chain, A, SpotSendAction(A, PURR_SPEC, "5")).users == (A,)


def test_refusal_from_an_unknown_address_creates_nothing() -> None:
    """An address the chain has never seen is refused without getting an account."""
    chain = new_chain()
    before = fingerprint(chain)
    assert chain.execute(C, UsdSendAction(B, "1"), T) == ErrorResponse(ERR_WITHDRAWABLE)
    assert chain.execute(C, UsdClassTransferAction("1", True), T) == ErrorResponse(ERR_SPOT_BALANCE)
    assert chain.execute(C, Withdraw3Action(B, "5"), T) == ErrorResponse(ERR_WITHDRAWABLE)
    assert fingerprint(chain) == before
    assert C not in chain.clearinghouse.accounts


# Conservation under random transfers.

MASTERS = (A, B, "0x" + "d" * 40)
MAKER = "0x" + "e" * 40  # keeps BTC quotes on the book for the random trades
OUTSIDER = "0x" + "f" * 40  # only ever a destination
AMOUNTS = (
    "0",
    "0.000001",
    "0.5",
    "1",
    "1.000001",
    "12.345678",
    "250",
    "4999.99",
    "20000",
    "-3",
    "x",
    "0.00000001",
)
DEXES = (("", ""), ("", "spot"), ("spot", ""), ("spot", "spot"), ("spot", "x"))
BTC_PRICES = (90_000, 95_000, 100_000, 105_000, 110_000)
TRANSFER_TYPES = (
    UsdClassTransferAction,
    UsdSendAction,
    SpotSendAction,
    Withdraw3Action,
    SendAssetAction,
    SubAccountTransferAction,
    SubAccountSpotTransferAction,
)

Op = tuple[int, int, int, int, bool]


class World:
    """A chain with three funded masters, their sub-accounts and a BTC market maker."""

    def __init__(self) -> None:
        self.chain = Chain(default_markets())
        clearinghouse = self.chain.clearinghouse
        for user in MASTERS:
            clearinghouse.credit_usd(user, 5_000 * USD)
            clearinghouse.credit_spot(user, USDC_TOKEN, 5_000 * WEI)
            clearinghouse.credit_spot(user, PURR_TOKEN, 1_000 * PURR)
            # Set BTC leverage up front so the margin actions never create a default setting.
            assert self.chain.execute(user, UpdateLeverageAction(BTC, True, 20), T) == (
                DefaultResponse()
            )
        clearinghouse.credit_usd(MAKER, 10_000_000 * USD)
        clearinghouse.set_mark(BTC, 1_000_000)
        self.usdc = usdc_supply_wei(self.chain)
        self.purr = self.purr_supply()

    def purr_supply(self) -> int:
        clearinghouse = self.chain.clearinghouse
        total = clearinghouse.spot_fees.get(PURR_TOKEN, 0)
        return total + sum(a.spot_total.get(PURR_TOKEN, 0) for a in clearinghouse.accounts.values())

    def subs(self, master: str) -> list[str]:
        return [s.address for s in self.chain.clearinghouse.sub_accounts_of(master)]

    def all_subs(self) -> list[str]:
        return list(self.chain.clearinghouse.sub_accounts)

    def party(self, j: int) -> str:
        parties = [*MASTERS, *self.all_subs(), OUTSIDER]
        return parties[j % len(parties)]

    def sub_of(self, master: str, j: int) -> str:
        """One of the master's sub-accounts, or (j % 4 == 3) anybody's, or a master."""
        subs = self.subs(master) if j % 4 != 3 else self.all_subs()
        return subs[j % len(subs)] if subs else MASTERS[j % 3]

    def action(self, op: Op) -> tuple[str, UserAction]:
        kind, i, j, k, flag = op
        master = MASTERS[i % 3]
        amount = AMOUNTS[k % len(AMOUNTS)]
        token = PURR_SPEC if flag else USDC_SPEC
        if kind == 0:
            if j % 2 and self.subs(master):
                amount = f"{amount} subaccount:{self.sub_of(master, j)}"
            return master, UsdClassTransferAction(amount, flag)
        if kind == 1:
            return master, UsdSendAction(self.party(j), amount)
        if kind == 2:
            return master, SpotSendAction(self.party(j), token, amount)
        if kind == 3:
            return master, Withdraw3Action(self.party(j), amount)
        if kind == 4:
            source_dex, destination_dex = DEXES[j % len(DEXES)]
            sub = self.sub_of(master, k) if flag and self.subs(master) else ""
            return master, SendAssetAction(
                self.party(j // 5), source_dex, destination_dex, USDC_SPEC, amount, sub
            )
        if kind == 5:
            signer = master if j % 7 else self.sub_of(master, j)
            return signer, CreateSubAccountAction(f"s{j % 13}")
        if kind == 6:
            micro = [0, 1, 500_000, 100 * USD, 3_000 * USD, -USD][k % 6]
            return master, SubAccountTransferAction(self.sub_of(master, j), flag, micro)
        if kind == 7:
            return master, SubAccountSpotTransferAction(self.sub_of(master, j), flag, token, amount)
        if kind == 8:
            return master, UpdateIsolatedMarginAction(BTC, True, (j - 30) * k * 1_000_000)
        return master, UpdateLeverageAction(BTC, j % 3 == 0, 1 + k)

    def step(self, op: Op) -> None:
        chain = self.chain
        kind, i, j, k, flag = op
        if kind == 10:  # trade 0.01 to 0.05 BTC against the maker at the mark
            taker = MASTERS[i % 3]
            px = str(chain.clearinghouse.mark(BTC) // 10)
            size = f"0.0{1 + k % 5}"
            maker_order = limit(BTC, not flag, px, size)
            assert isinstance(chain.execute(MAKER, OrderAction((maker_order,)), T), OrderResponse)
            chain.execute(taker, OrderAction((limit(BTC, flag, px, size, "Ioc"),)), T)
        elif kind == 11:
            chain.clearinghouse.set_mark(BTC, BTC_PRICES[j % len(BTC_PRICES)] * 10)
        elif kind == 12:  # a resting PURR buy holds spot USDC
            order = limit(PURR_USDC, True, "0.2", str(50 * (1 + k)))
            chain.execute(MASTERS[i % 3], OrderAction((order,)), T)
        else:
            self.transfer(*self.action(op))
        self.check()

    def transfer(self, user: str, action: UserAction) -> None:
        chain = self.chain
        before = fingerprint(chain)
        ledger = len(chain.ledger)
        clearinghouse = chain.clearinghouse
        # (cross value, withdrawable) of every account before the action.
        margins = {
            owner: (clearinghouse.cross_value(account), clearinghouse.withdrawable(account))
            for owner, account in clearinghouse.accounts.items()
        }
        response: ActionResponse = chain.execute(user, action, T)
        if isinstance(response, ErrorResponse):
            assert fingerprint(chain) == before, (action, response)
        elif isinstance(response, CreateSubAccountResponse):
            assert len(chain.ledger) == ledger
            assert chain.clearinghouse.master_of(response.address) == user
        elif isinstance(action, TRANSFER_TYPES):
            assert response == DefaultResponse()
            for owner, (value, withdrawable) in margins.items():
                # No transfer takes more out of an account than was withdrawable from it.
                after = clearinghouse.cross_value(clearinghouse.accounts[owner])
                assert after >= value - withdrawable, (action, owner, value, withdrawable, after)
            assert len(chain.ledger) == ledger + 1, action
            users = chain.ledger[-1].users
            mine = {user, *self.subs(user)}
            assert mine & set(users), (action, users)
        else:
            assert response == DefaultResponse()
            assert len(chain.ledger) == ledger

    def check(self) -> None:
        chain = self.chain
        chain._check()
        assert usdc_supply_wei(chain) == self.usdc
        assert self.purr_supply() == self.purr
        clearinghouse = chain.clearinghouse
        for user, account in clearinghouse.accounts.items():
            for token, total in account.spot_total.items():
                assert total >= 0, (user, token, total)
                assert 0 <= account.spot_hold.get(token, 0) <= total
            assert len(clearinghouse.sub_accounts_of(user)) <= 10
            if user in clearinghouse.sub_accounts:
                assert clearinghouse.sub_accounts_of(user) == []


ops = st.tuples(
    st.integers(0, 12), st.integers(0, 2), st.integers(0, 60), st.integers(0, 40), st.booleans()
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=40))
def test_transfers_conserve_usdc_and_tokens(steps: list[Op]) -> None:
    """Any mix of transfers, sub-accounts, margin changes and trades: perp cash + spot USDC +
    withdrawn + fees stays constant (in spot wei), PURR too, no spot total or hold goes
    negative, a refusal changes nothing, a success records one update naming the signer or one
    of its sub-accounts."""
    world = World()
    for op in steps:
        world.step(op)


@pytest.mark.parametrize("seed", range(4))
def test_long_random_transfer_runs_conserve_usdc(seed: int) -> None:
    """The same checks over 600 seeded random steps, where many sub-accounts and positions
    build up."""
    rng = random.Random(seed)
    world = World()
    for _ in range(600):
        op = (
            rng.randrange(13),
            rng.randrange(3),
            rng.randrange(61),
            rng.randrange(41),
            rng.random() < 0.5,
        )
        world.step(op)
    assert world.chain.clearinghouse.sub_accounts
