"""Self-supervised methods as keras.Models; `get(name, **kwargs)` builds one."""

from keras_ssl.methods.base import Method
from keras_ssl.methods.contract import Batch, LabeledBatch, RunContext, StepContext
from keras_ssl.methods.outputs import (ContrastiveOutputs, DistillationOutputs, Outputs,
                                      PrototypeOutputs)
from keras_ssl.methods.byol import BYOL
from keras_ssl.methods.cmsf import CMSF, SupervisedCMSF
from keras_ssl.methods.fixmatch import FixMatch
from keras_ssl.methods.hiermatch import HierMatch
from keras_ssl.methods.instance_classifier import InstanceClassifier
from keras_ssl.methods.interclr import InterCLR
from keras_ssl.methods.mira import MIRA
from keras_ssl.methods.mixmatch import MixMatch
from keras_ssl.methods.moco import MoCo
from keras_ssl.methods.momentum import MomentumMethod
from keras_ssl.methods.msf import MSF
from keras_ssl.methods.nncsl import NNCSL
from keras_ssl.methods.npid import NPID
from keras_ssl.methods.registry import (LOGIT_TRANSFORMS, METHODS, OBJECTIVES, PRESETS,
                                        available, base_name, make_logit_transforms,
                                        get, make_objectives, method_class)
from keras_ssl.methods.simclr import SimCLR
from keras_ssl.methods.swav import SwAV
