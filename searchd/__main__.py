import sys

from searchd.cli import main

sys.exit(main())
