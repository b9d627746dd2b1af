import sys

from mimird.cli import main

sys.exit(main())
