"""The market (BRIEF §3): negotiation, pre-trade checks, signed contracts, the trade's
life from payment into escrow to settlement, metered billing runs and auctions."""
