"""Evaluates a trained encoder the standard ways and prints the results as one JSON line.

    python experiments/evaluate.py --checkpoint=/tmp/simclr \
        --data=../shared/data/cifar10 --protocol=all --plot=/tmp/simclr/plots

The same program as the installed `keras-ssl-evaluate`
(keras_ssl/cli/evaluate.py), run from the source tree; `--helpfull` lists the flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_ssl.cli.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
