"""VBN extraction: one Visual Behavior Neuropixels session -> results/{session}/spikes.nc.

Runs under the vbn environment (config ``vbn.python``, default ``.venv-vbn/bin/python``; build it
with ``bash scripts/setup_vbn_env.sh``), called by the ``vbn_extract`` shell rule with explicit
arguments (see ``python scripts/vbn_extract.py --help``). All logic lives in spikerbm.vbn.
"""

import sys

from spikerbm.vbn import main_extract

if __name__ == "__main__":
    sys.exit(main_extract())
