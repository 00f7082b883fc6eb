import sys

from sloscope.cli import main

sys.exit(main())
