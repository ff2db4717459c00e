import sys

from evoprune.cli import main

sys.exit(main())
