import sys

from servegate.entry.cli import main

sys.exit(main())
