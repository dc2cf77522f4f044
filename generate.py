"""Text to image: ``python generate.py --prompt "a photo of a red circle" [--n 4] [--cfg S]
[--seed N] [--out DIR] [--model DIR]``.

A thin wrapper around ``vqrae generate`` (same flags; ``python generate.py --help``).
"""

import sys

from vqrae.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
