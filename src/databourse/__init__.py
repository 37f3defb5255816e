"""DataBourse: an open-source data exchange."""

__version__ = "0.1.0"
