"""Chooses which training images to label (USL) and writes one dataset index per line.

    python experiments/select_labels.py --checkpoint=/tmp/simclr \
        --data=../shared/data/cifar10 --budget=40 --output=/tmp/usl_40.txt

The same program as the installed `keras-ssl-select-labels`
(keras_ssl/cli/select_labels.py), run from the source tree; `--helpfull` lists
the flags. train.py --label_indices=/tmp/usl_40.txt then trains on those labels.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_ssl.cli.select_labels import main  # noqa: E402

if __name__ == "__main__":
    main()
