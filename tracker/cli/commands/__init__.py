"""One module per command (or group); `tracker.cli.COMMANDS` names them, and each registers
its command on `cli` when `tracker.cli` imports it, on first use."""
