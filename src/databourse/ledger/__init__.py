"""Transparency ledger: signed notes, checkpoints and witness cosignatures."""
