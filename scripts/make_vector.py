"""Write the golden replay vector tests/vectors/basic.json: a short chain on the default config
where dev accounts trade perps and spot, transfer, change leverage and modes, and borrow.

Run it again (and review the diff) only when a change to the rules or to the state hash is
meant to change the hashes:

    .venv/bin/python scripts/make_vector.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.chainstore import export_fixture, open_store  # noqa: E402
from node.config import load_config  # noqa: E402
from node.devaccounts import derive_accounts  # noqa: E402
from protocol.actions import (  # noqa: E402
    BorrowLendAction,
    CreateSubAccountAction,
    OrderAction,
    SpotSendAction,
    UpdateLeverageAction,
    UsdSendAction,
    UserSetAbstractionAction,
)
from protocol.chain import Action  # noqa: E402
from protocol.orders import LimitWire, OrderTypeWire, OrderWire, TriggerWire  # noqa: E402

GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BLOCK_MS = 1_000
OUT = ROOT / "tests" / "vectors" / "basic.json"


def limit(asset: int, is_buy: bool, px: str, sz: str, tif: str = "Gtc") -> OrderAction:
    kind = OrderTypeWire(limit=LimitWire(tif))
    return OrderAction((OrderWire(asset, is_buy, px, sz, False, kind),))


def stop(asset: int, is_buy: bool, px: str, sz: str, trigger_px: str) -> OrderAction:
    kind = OrderTypeWire(trigger=TriggerWire(True, trigger_px, "sl"))
    return OrderAction((OrderWire(asset, is_buy, px, sz, True, kind),))


def blocks(a: str, b: str, c: str, d: str) -> list[list[tuple[str, Action]]]:
    purr = "PURR:0xc4bf3f870c0e9465323c0b6ed28096c2"
    return [
        [(a, limit(0, False, "100100", "0.4")), (b, limit(0, True, "99900", "0.4"))],
        [(c, limit(0, True, "100100", "0.2", "Ioc")), (a, UpdateLeverageAction(1, False, 10))],
        [(b, limit(1, False, "3000", "2")), (a, limit(1, True, "3000", "2", "Ioc"))],
        [(a, stop(0, True, "110000", "0.2", "105000")), (b, UsdSendAction(c, "1234.5"))],
        [(b, limit(10000, False, "0.2", "1000")), (c, limit(10000, True, "0.2", "1000", "Ioc"))],
        [(c, SpotSendAction(a, purr, "10")), (a, CreateSubAccountAction("desk"))],
        [
            (c, UserSetAbstractionAction(c, "portfolioMargin")),  # refused: c holds BTC
            (d, UserSetAbstractionAction(d, "portfolioMargin")),
        ],
        [(b, BorrowLendAction("supply", 0, "100000"))],
        [(d, BorrowLendAction("borrow", 0, "500"))],
        [(d, limit(10001, True, "30", "10", "Ioc")), (b, limit(10001, False, "30", "10"))],
        [(d, limit(0, False, "99000", "0.3", "Ioc")), (b, limit(0, True, "99000", "0.3"))],
        [(d, BorrowLendAction("repay", 0, None))],
    ]


def main() -> None:
    config = load_config(ROOT / "configs" / "devnet.toml")
    a, b, c, d = (acct.address for acct in derive_accounts(config.dev_accounts.mnemonic, 4))
    with tempfile.TemporaryDirectory() as tmp:
        store, loaded = open_store(Path(tmp), config, config.text, GENESIS_MS)
        chain = loaded.chain
        for height, proposed in enumerate(blocks(a, b, c, d), start=1):
            time = GENESIS_MS + height * BLOCK_MS
            chain.apply_block(height, time, proposed)
            store.commit(chain, height, time, proposed)
        store.log.close()
        OUT.write_bytes(export_fixture(Path(tmp)) + b"\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
