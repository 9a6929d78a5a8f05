"""dwm-data: build aligned (interaction, static-scene, hand) video triplets for Dexterous World Models."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
