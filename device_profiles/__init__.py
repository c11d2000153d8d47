"""The shipped device profiles (one TOML file each), installed as package data of `mobilepre`."""
