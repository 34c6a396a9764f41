"""`python -m chdb_http --data-dir DIR [--port N]`: run the server (see server.main)."""

import sys

from .server import main

sys.exit(main())
