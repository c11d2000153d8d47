"""`python -m mobilepre` runs the CLI."""

from mobilepre.cli import main

main()
