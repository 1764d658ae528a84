"""The node: trio actors around the protocol core, the CLI and configuration."""
