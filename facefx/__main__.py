import sys

from facefx.console import main

sys.exit(main())
