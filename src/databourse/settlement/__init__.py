"""Settlement (BRIEF §9): double-entry accounts, escrow, fees, commissions, payment rails,
usage records and metered billing, and statements."""
