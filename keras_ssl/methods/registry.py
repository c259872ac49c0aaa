"""Registry: method names -> classes."""

from keras_ssl.methods.byol import BYOL
from keras_ssl.methods.cld import BYOLCLD, MoCoCLD, NPIDCLD
from keras_ssl.methods.cmsf import CMSF, SupervisedCMSF
from keras_ssl.methods.interclr import InterCLR
from keras_ssl.methods.mira import MIRA
from keras_ssl.methods.moco import MoCo
from keras_ssl.methods.msf import MSF
from keras_ssl.methods.npid import NPID
from keras_ssl.methods.simclr import SimCLR
from keras_ssl.methods.swav import SwAV

METHODS = {
    "simclr": SimCLR,
    "moco_v2": MoCo,
    "npid": NPID,
    "byol": BYOL,
    "npid_cld": NPIDCLD,
    "moco_v2_cld": MoCoCLD,
    "byol_cld": BYOLCLD,
    "swav": SwAV,
    "mira": MIRA,
    "msf": MSF,
    "cmsf": CMSF,
    "cmsf_supervised": SupervisedCMSF,
    "interclr": InterCLR,
}


def available():
    """Registered method names, sorted."""
    return sorted(METHODS)


def get(name, **kwargs):
    """Builds method `name` with constructor keyword arguments `kwargs`.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> get("simclr", encoder=tiny_backbone()).name
    'simclr'
    """
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(available())}.")
    kwargs.setdefault("name", name)
    return METHODS[name](**kwargs)
