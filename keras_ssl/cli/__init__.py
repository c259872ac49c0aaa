"""The command-line programs: keras-ssl-train, keras-ssl-evaluate, keras-ssl-export.

Each module defines its absl flags when its `main()` runs, so importing one
never clashes with another's flags; `experiments/train.py`, `evaluate.py` and
`export.py` are the same programs run from a source tree. Defining and checking
the flags imports no TensorFlow (each program imports it in its run function),
so `--helpfull` and a bad flag or path answer in well under a second.
"""
