"""Delivery: how a buyer receives what its contract licenses, with the policy enforced and
every use metered — the API gateway, fingerprinted downloads, and Delta Sharing."""
