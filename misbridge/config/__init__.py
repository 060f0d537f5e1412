"""Settings (TOML + environment) and where secrets come from."""
