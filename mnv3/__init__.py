"""mnv3: MobileNetV3 (Howard et al., "Searching for MobileNetV3", 2019) from JSON specs.

    import mnv3
    model = mnv3.build_model("small", num_classes=10, in_channels=1)
"""
from .layers import HardSigmoid, HardSwish, Sigmoid, Swish
from .model import MobileNetV3, build_model, model_from_config
from .spec import SpecError, load_spec
from .torchvision_compat import from_torchvision, to_torchvision

__all__ = [
    "HardSigmoid",
    "HardSwish",
    "Sigmoid",
    "Swish",
    "MobileNetV3",
    "SpecError",
    "build_model",
    "from_torchvision",
    "load_spec",
    "model_from_config",
    "to_torchvision",
]
__version__ = "0.1.0"
