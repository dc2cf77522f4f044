"""``python -m vqrae.cli`` (what torchrun launches): the ``vqrae`` command."""

import sys

from vqrae.cli import main

sys.exit(main())
