"""Demands (需求): what buyers need, matched to listed supply (撮合)."""
