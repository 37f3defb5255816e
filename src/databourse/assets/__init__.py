"""Data assets: registration of what a merchant holds, its rights, grade and data files."""
