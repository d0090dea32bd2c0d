import sys

from deepen.cli import main

sys.exit(main())
