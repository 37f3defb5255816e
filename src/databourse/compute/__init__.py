"""Compute: data usable but not visible — privacy budgets first; DP SQL, private set
intersection and federated learning build on them."""
