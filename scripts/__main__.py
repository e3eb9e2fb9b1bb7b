"""`python -m scripts ...` is `mtdqn ...`."""

from scripts.cli import main

main()
