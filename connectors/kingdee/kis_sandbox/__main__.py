"""``python -m connectors.kingdee.kis_sandbox --port N``: the KIS sandbox in the foreground."""

import sys

from connectors.kingdee.kis_sandbox.run import main

sys.exit(main())
