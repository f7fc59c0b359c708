"""The ``corpusgate`` command, as the wheel installs it: the same as the Rust binary."""

import sys

from . import _corpusgate


def main() -> None:
    sys.exit(_corpusgate.main(["corpusgate", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
