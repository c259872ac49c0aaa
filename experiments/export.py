"""Exports the encoder of a trained run as a SavedModel and a .keras file.

    python experiments/export.py --checkpoint=/tmp/simclr --export_dir=/tmp/simclr_export

The same program as the installed `keras-ssl-export` (keras_ssl/cli/export.py),
run from the source tree.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_ssl.cli.export import main  # noqa: E402

if __name__ == "__main__":
    main()
