"""Transfers: moving USDC and spot tokens between an account's perp and spot balances, to other
accounts, to sub-accounts, and out of the chain.

Invariants:
- A transfer either moves the whole amount and records one ledger update, or is refused and
  changes nothing.
- Nothing is created: every debit has an equal credit, except a withdrawal, whose amount leaves
  the chain (`Clearinghouse.withdrawn`) less its 1 USDC fee (`Clearinghouse.withdraw_fees`).
- USDC leaves a perp account only up to `withdrawable` (the transfer margin rule), and a spot
  balance only up to its free part (total minus holds).
- Perp USDC has 6 decimals, spot USDC 8: a class transfer of x USDC moves x * 10**6 micro-USDC
  on one side and x * 10**8 wei on the other.

Choices (Hyperliquid does not document these): the error strings below; no activation fee
for a first transfer to a new account; sub-accounts need no trading volume, at most 10 per
master, names of 1 to 16 characters unique per master; a sub-account's address is derived
from a hash of a chain-wide counter, so replays give the same addresses.
"""

from __future__ import annotations

import hashlib

from protocol.actions import (
    ActionResponse,
    CreateSubAccountAction,
    CreateSubAccountResponse,
    DefaultResponse,
    ErrorResponse,
    SendAssetAction,
    SpotSendAction,
    SubAccountSpotTransferAction,
    SubAccountTransferAction,
    TransferAction,
    UsdClassTransferAction,
    UsdSendAction,
    Withdraw3Action,
)
from protocol.clearinghouse import SPOT_USDC_PER_MICRO, UNIFIED_MODES, Clearinghouse, SubAccount
from protocol.fixed import USD_DECIMALS, parse_fixed
from protocol.ledger import (
    AccountClassTransfer,
    InternalTransfer,
    LedgerUpdate,
    Send,
    SpotTransfer,
    SubAccountTransfer,
    Withdraw,
)
from protocol.markets import SpotToken

WITHDRAW_FEE = 1 * 10**USD_DECIMALS
MAX_SUB_ACCOUNTS = 10
MAX_SUB_ACCOUNT_NAME = 16
USDC = "USDC"

ERR_AMOUNT = "Invalid amount."
ERR_ADDRESS = "Invalid destination address."
ERR_WITHDRAWABLE = "Insufficient withdrawable balance."
ERR_SPOT_BALANCE = "Insufficient spot balance."
ERR_TOKEN = "Unknown token."
ERR_DEX = "Unknown dex."
ERR_PERP_TOKEN = "Only USDC can move in or out of perps."
ERR_WITHDRAW_FEE = "Withdrawal amount must exceed the 1 USDC fee."
ERR_NOT_SUB_ACCOUNT = "Not a sub-account of this user."
ERR_SUB_ACCOUNT_NAME = "Sub-account name must be 1 to 16 characters and unused."
ERR_TOO_MANY_SUB_ACCOUNTS = "Too many sub-accounts."
ERR_SUB_ACCOUNT_MASTER = "Sub-accounts cannot create sub-accounts."
ERR_UNIFIED = "Action disabled when unified account is active."

_HEX = frozenset("0123456789abcdef")
Result = tuple[ActionResponse, tuple[LedgerUpdate, ...]]


def normalize_address(text: str) -> str | None:
    """Lower-cased 0x address, or None when `text` is not 0x and 40 hex digits."""
    address = text.lower()
    if len(address) != 42 or address[:2] != "0x" or not _HEX.issuperset(address[2:]):
        return None
    return address


def parse_usdc(text: str) -> int | None:
    """A positive USDC amount in micro-USDC."""
    amount = parse_fixed(text, USD_DECIMALS)
    return amount if amount is not None and amount > 0 else None


def find_token(clearinghouse: Clearinghouse, spec: str) -> SpotToken | None:
    """The token named by `NAME:0xTOKENID` (both parts must match)."""
    name, _, token_id = spec.partition(":")
    token = clearinghouse.markets.token_by_name(name)
    if token is None or token.token_id.lower() != token_id.lower():
        return None
    return token


def apply_transfer(
    clearinghouse: Clearinghouse, user: str, action: TransferAction, time: int
) -> Result:
    match action:
        case UsdClassTransferAction():
            return _usd_class_transfer(clearinghouse, user, action, time)
        case UsdSendAction():
            return _usd_send(clearinghouse, user, action, time)
        case SpotSendAction():
            return _spot_send(clearinghouse, user, action, time)
        case Withdraw3Action():
            return _withdraw(clearinghouse, user, action, time)
        case SendAssetAction():
            return _send_asset(clearinghouse, user, action, time)
        case CreateSubAccountAction():
            return _create_sub_account(clearinghouse, user, action)
        case SubAccountTransferAction():
            return _sub_account_transfer(clearinghouse, user, action, time)
        case SubAccountSpotTransferAction():
            return _sub_account_spot_transfer(clearinghouse, user, action, time)


def _users(*users: str) -> tuple[str, ...]:
    """The accounts an update names, each once, in order."""
    return tuple(dict.fromkeys(users))


def _refuse(error: str) -> Result:
    return ErrorResponse(error), ()


def _ok(*updates: LedgerUpdate) -> Result:
    return DefaultResponse(), updates


def _token_amount(
    clearinghouse: Clearinghouse, spec: str, text: str
) -> tuple[SpotToken, int] | str:
    """The token named `NAME:0xTOKENID` and a positive amount of it in wei, or the error."""
    token = find_token(clearinghouse, spec)
    if token is None:
        return ERR_TOKEN
    amount = parse_fixed(text, token.wei_decimals)
    if amount is None or amount <= 0:
        return ERR_AMOUNT
    return token, amount


def _usdc_token(clearinghouse: Clearinghouse) -> int:
    token = clearinghouse.markets.token_by_name(USDC)
    assert token is not None, "the genesis has no USDC spot token"
    return token.index


def _move_perp_usdc(
    clearinghouse: Clearinghouse, source: str, destination: str, amount: int
) -> str | None:
    """Move perp USDC within withdrawable; the error, or None when done. A unified account's
    USDC is one balance: what its perp cash lacks comes from its spot USDC."""
    sender = clearinghouse.accounts.get(source)
    if sender is None or amount > clearinghouse.withdrawable(sender):
        return ERR_WITHDRAWABLE
    short = amount - max(sender.usd, 0)
    if short > 0 and sender.abstraction in UNIFIED_MODES:
        wei = min(
            short * SPOT_USDC_PER_MICRO,
            clearinghouse.transferable_spot(sender, clearinghouse.usdc_token),
        )
        micro = wei // SPOT_USDC_PER_MICRO
        sender.spot_total[clearinghouse.usdc_token] -= micro * SPOT_USDC_PER_MICRO
        sender.usd += micro
    sender.usd -= amount
    clearinghouse.account(destination).usd += amount
    return None


def _move_spot(
    clearinghouse: Clearinghouse, source: str, destination: str, token: int, amount: int
) -> str | None:
    sender = clearinghouse.accounts.get(source)
    if sender is None or amount > clearinghouse.transferable_spot(sender, token):
        return ERR_SPOT_BALANCE
    sender.spot_total[token] -= amount
    receiver = clearinghouse.account(destination)
    receiver.spot_total[token] = receiver.spot_total.get(token, 0) + amount
    return None


def _class_transfer(
    clearinghouse: Clearinghouse, user: str, micro: int, to_perp: bool
) -> str | None:
    account = clearinghouse.accounts.get(user)
    if account is None:
        return ERR_SPOT_BALANCE if to_perp else ERR_WITHDRAWABLE
    if account.abstraction in UNIFIED_MODES:
        return ERR_UNIFIED
    usdc = _usdc_token(clearinghouse)
    wei = micro * SPOT_USDC_PER_MICRO
    if to_perp:
        if wei > clearinghouse.transferable_spot(account, usdc):
            return ERR_SPOT_BALANCE
        account.spot_total[usdc] -= wei
        account.usd += micro
    else:
        if micro > clearinghouse.withdrawable(account):
            return ERR_WITHDRAWABLE
        account.usd -= micro
        account.spot_total[usdc] = account.spot_total.get(usdc, 0) + wei
    return None


def _usd_class_transfer(
    clearinghouse: Clearinghouse, user: str, action: UsdClassTransferAction, time: int
) -> Result:
    text, _, suffix = action.amount.partition(" ")
    account_user = user
    if suffix:
        tag, _, address = suffix.partition(":")
        sub = normalize_address(address)
        if tag != "subaccount" or sub is None:
            return _refuse(ERR_AMOUNT)
        if clearinghouse.master_of(sub) != user:
            return _refuse(ERR_NOT_SUB_ACCOUNT)
        account_user = sub
    micro = parse_usdc(text)
    if micro is None:
        return _refuse(ERR_AMOUNT)
    error = _class_transfer(clearinghouse, account_user, micro, action.to_perp)
    if error is not None:
        return _refuse(error)
    return _ok(LedgerUpdate(time, (account_user,), AccountClassTransfer(micro, action.to_perp)))


def _usd_send(clearinghouse: Clearinghouse, user: str, action: UsdSendAction, time: int) -> Result:
    destination = normalize_address(action.destination)
    if destination is None:
        return _refuse(ERR_ADDRESS)
    micro = parse_usdc(action.amount)
    if micro is None:
        return _refuse(ERR_AMOUNT)
    error = _move_perp_usdc(clearinghouse, user, destination, micro)
    if error is not None:
        return _refuse(error)
    delta = InternalTransfer(micro, user, destination, 0)
    return _ok(LedgerUpdate(time, _users(user, destination), delta))


def _spot_send(
    clearinghouse: Clearinghouse, user: str, action: SpotSendAction, time: int
) -> Result:
    destination = normalize_address(action.destination)
    if destination is None:
        return _refuse(ERR_ADDRESS)
    parsed = _token_amount(clearinghouse, action.token, action.amount)
    if isinstance(parsed, str):
        return _refuse(parsed)
    token, amount = parsed
    error = _move_spot(clearinghouse, user, destination, token.index, amount)
    if error is not None:
        return _refuse(error)
    delta = SpotTransfer(token.name, amount, user, destination, 0)
    return _ok(LedgerUpdate(time, _users(user, destination), delta))


def _withdraw(
    clearinghouse: Clearinghouse, user: str, action: Withdraw3Action, time: int
) -> Result:
    if normalize_address(action.destination) is None:
        return _refuse(ERR_ADDRESS)
    micro = parse_usdc(action.amount)
    if micro is None:
        return _refuse(ERR_AMOUNT)
    if micro <= WITHDRAW_FEE:
        return _refuse(ERR_WITHDRAW_FEE)
    account = clearinghouse.accounts.get(user)
    if account is None or micro > clearinghouse.withdrawable(account):
        return _refuse(ERR_WITHDRAWABLE)
    account.usd -= micro
    clearinghouse.withdraw_fees += WITHDRAW_FEE
    clearinghouse.withdrawn += micro - WITHDRAW_FEE
    return _ok(LedgerUpdate(time, (user,), Withdraw(micro, action.time, WITHDRAW_FEE)))


def _send_asset(
    clearinghouse: Clearinghouse, user: str, action: SendAssetAction, time: int
) -> Result:
    destination = normalize_address(action.destination)
    if destination is None:
        return _refuse(ERR_ADDRESS)
    source = user
    if action.from_sub_account:
        sub = normalize_address(action.from_sub_account)
        if sub is None or clearinghouse.master_of(sub) != user:
            return _refuse(ERR_NOT_SUB_ACCOUNT)
        source = sub
    if action.source_dex not in ("", "spot") or action.destination_dex not in ("", "spot"):
        return _refuse(ERR_DEX)
    token = find_token(clearinghouse, action.token)
    if token is None:
        return _refuse(ERR_TOKEN)
    touches_perp = "" in (action.source_dex, action.destination_dex)
    if touches_perp and token.name != USDC:
        return _refuse(ERR_PERP_TOKEN)
    decimals = USD_DECIMALS if touches_perp else token.wei_decimals
    amount = parse_fixed(action.amount, decimals)
    if amount is None or amount <= 0:
        return _refuse(ERR_AMOUNT)
    error = _send_between(clearinghouse, source, destination, action, token, amount)
    if error is not None:
        return _refuse(error)
    wei = amount * SPOT_USDC_PER_MICRO if touches_perp else amount
    delta = Send(source, destination, action.source_dex, action.destination_dex, token.name, wei, 0)
    return _ok(LedgerUpdate(time, _users(source, destination), delta))


def _send_between(
    clearinghouse: Clearinghouse,
    source: str,
    destination: str,
    action: SendAssetAction,
    token: SpotToken,
    amount: int,
) -> str | None:
    """Move `amount` (micro-USDC when a perp side is involved, else token wei)."""
    from_perp = action.source_dex == ""
    to_perp = action.destination_dex == ""
    if from_perp and to_perp:
        return _move_perp_usdc(clearinghouse, source, destination, amount)
    if not from_perp and not to_perp:
        return _move_spot(clearinghouse, source, destination, token.index, amount)
    # One side perp, one side spot: a class transfer, then a move on the destination side.
    error = _class_transfer(clearinghouse, source, amount, to_perp)
    if error is not None or source == destination:
        return error
    if to_perp:
        clearinghouse.account(source).usd -= amount
        clearinghouse.account(destination).usd += amount
    else:
        wei = amount * SPOT_USDC_PER_MICRO
        clearinghouse.account(source).spot_total[token.index] -= wei
        receiver = clearinghouse.account(destination)
        receiver.spot_total[token.index] = receiver.spot_total.get(token.index, 0) + wei
    return None


def _create_sub_account(
    clearinghouse: Clearinghouse, user: str, action: CreateSubAccountAction
) -> Result:
    if clearinghouse.master_of(user) is not None:
        return _refuse(ERR_SUB_ACCOUNT_MASTER)
    mine = clearinghouse.sub_accounts_of(user)
    if not 1 <= len(action.name) <= MAX_SUB_ACCOUNT_NAME or any(
        s.name == action.name for s in mine
    ):
        return _refuse(ERR_SUB_ACCOUNT_NAME)
    if len(mine) >= MAX_SUB_ACCOUNTS:
        return _refuse(ERR_TOO_MANY_SUB_ACCOUNTS)
    seed = f"sub-account:{len(clearinghouse.sub_accounts)}:{user}".encode()
    address = "0x" + hashlib.sha256(seed).hexdigest()[:40]
    clearinghouse.sub_accounts[address] = SubAccount(address, user, action.name)
    clearinghouse.account(address)
    return CreateSubAccountResponse(address), ()


def _sub_account_transfer(
    clearinghouse: Clearinghouse, user: str, action: SubAccountTransferAction, time: int
) -> Result:
    sub = normalize_address(action.sub_account_user)
    if sub is None or clearinghouse.master_of(sub) != user:
        return _refuse(ERR_NOT_SUB_ACCOUNT)
    if action.usd <= 0:
        return _refuse(ERR_AMOUNT)
    source, destination = (user, sub) if action.is_deposit else (sub, user)
    error = _move_perp_usdc(clearinghouse, source, destination, action.usd)
    if error is not None:
        return _refuse(error)
    delta = SubAccountTransfer(action.usd, source, destination)
    return _ok(LedgerUpdate(time, (user, sub), delta))


def _sub_account_spot_transfer(
    clearinghouse: Clearinghouse, user: str, action: SubAccountSpotTransferAction, time: int
) -> Result:
    sub = normalize_address(action.sub_account_user)
    if sub is None or clearinghouse.master_of(sub) != user:
        return _refuse(ERR_NOT_SUB_ACCOUNT)
    parsed = _token_amount(clearinghouse, action.token, action.amount)
    if isinstance(parsed, str):
        return _refuse(parsed)
    token, amount = parsed
    source, destination = (user, sub) if action.is_deposit else (sub, user)
    error = _move_spot(clearinghouse, source, destination, token.index, amount)
    if error is not None:
        return _refuse(error)
    delta = SpotTransfer(token.name, amount, source, destination, 0)
    return _ok(LedgerUpdate(time, (user, sub), delta))
