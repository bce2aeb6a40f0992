"""Data files shipped with sap_payments (read with :mod:`importlib.resources`)."""
