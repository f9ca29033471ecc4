"""`python -m outrider` runs the CLI."""

from outrider.cli import main

main()
