"""Database actions for this project; run ``python manage.py --help``."""

import sys

from management.cli import main

if __name__ == "__main__":
    sys.exit(main())
