"""The recipe presets (`<name>.yaml`), shipped as package data so an installed wheel has them."""
