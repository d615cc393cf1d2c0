"""Reference models written with the frontend: export, runtime and benchmark targets."""
from .bert import Encoder, EncoderConfig
from .llama import Decoder, DecoderConfig
from .vision import MLP, BasicBlock, ResNet, SmallCNN

__all__ = ["MLP", "SmallCNN", "ResNet", "BasicBlock", "Encoder", "EncoderConfig", "Decoder", "DecoderConfig"]
