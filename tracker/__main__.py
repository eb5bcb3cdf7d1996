"""`python -m tracker` runs the `tracker` command line."""

from tracker.cli import main

main()
