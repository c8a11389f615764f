"""`python -m i2i` runs the command line."""

from i2i.cli import main

main()
