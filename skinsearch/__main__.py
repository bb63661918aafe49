"""``python -m skinsearch``."""

from skinsearch.cli import main

if __name__ == "__main__":
    main()
