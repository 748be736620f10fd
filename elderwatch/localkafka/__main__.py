"""``python -m elderwatch.localkafka fetch|run [--port N] [--version X.Y.Z]``: see elderwatch.localkafka."""

import sys

from elderwatch.localkafka import main

if __name__ == "__main__":  # guarded: pytest --doctest-modules imports this module
    sys.exit(main())
