"""Preparing datasets once into ArrayRecord files (see core.py; one module per source format)."""
