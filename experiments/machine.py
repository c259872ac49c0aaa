"""The machine a benchmark ran on, as its tables print it."""

import os


def machine():
    """CPU model, cores and the vector extensions that change TensorFlow's CPU speed."""
    model, flags_ = "unknown", set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags_ = set(value.split())
    except OSError:
        pass
    extensions = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags_]
    return dict(cpu=model, cores=os.cpu_count(), extensions=extensions)
