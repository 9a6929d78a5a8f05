"""The `dwm-data` command line: thin Typer commands over `dwm_data` and `dwm_model`."""
