"""ISO 20022 bank files: pain.001 payment files out, pain.002 status reports and camt.054
notifications in, and the ``iso20022-bank`` provider plugin built on them."""
