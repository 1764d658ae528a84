"""The Hyperliquid-compatible API: what `/exchange`, `/info` and `/ws` need around the core."""
