import sys

from trajgym.cli.main import main

sys.exit(main())
