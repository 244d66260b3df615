"""Data layer: shard writer (`shards`), demo data (`demo`), streaming datamodule (`datamodule`).

Import the submodules directly; this package import stays light (no Lightning) so that tools
which only write shards do not pay for it.
"""
