import sys

from elasticnet.cli import main

sys.exit(main())
