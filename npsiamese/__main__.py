"""``python -m npsiamese`` is the ``npsiamese`` command."""
import sys

from .cli import main

sys.exit(main())
