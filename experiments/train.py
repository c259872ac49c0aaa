"""Trains a self-supervised method and prints its results as one JSON line.

    python experiments/train.py --method=simclr --preset=cifar10_cpu_small \
        --data=../shared/data/cifar10 --model_dir=/tmp/simclr

The same program as the installed `keras-ssl-train` (keras_ssl/cli/train.py),
run from the source tree; `--helpfull` lists the flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_ssl.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()
