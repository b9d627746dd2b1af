import sys

from mimirctl.cli import main

sys.exit(main())
