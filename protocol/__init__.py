"""The deterministic core of the devnet: state, rules and messages, with no I/O."""
