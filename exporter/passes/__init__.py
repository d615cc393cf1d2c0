"""Graph -> Graph passes. Each keeps numerics; each can be turned off by name:
export(..., optimize=["dce", "cse"]) runs only those."""
from .basic import cse, dce, fold_constants, remove_noop_views
from .fuse import (fold_cast_into_index_put, fold_conv_bn, fuse_add_layer_norm, fuse_add_relu, fuse_bias_activation,
                   fuse_packed_attention, fuse_parallel_linears, fuse_swiglu)

PASSES = {
    "fold_constants": fold_constants,
    "remove_noop_views": remove_noop_views,
    "fold_conv_bn": fold_conv_bn,
    "fuse_parallel_linears": fuse_parallel_linears,
    "fuse_packed_attention": fuse_packed_attention,
    "fuse_add_layer_norm": fuse_add_layer_norm,
    "fuse_add_relu": fuse_add_relu,
    "fuse_bias_activation": fuse_bias_activation,
    "fuse_swiglu": fuse_swiglu,
    "fold_cast_into_index_put": fold_cast_into_index_put,
    "cse": cse,
    "dce": dce,
}


def default_pipeline(optimize=True):
    if optimize is True:
        names = list(PASSES)
    elif optimize in (False, None):
        names = ["dce"]
    else:
        names = list(optimize)
        unknown = [n for n in names if n not in PASSES]
        if unknown:
            from ..errors import ExportError
            raise ExportError(f"unknown passes {unknown}; known: {list(PASSES)}")
    return [PASSES[n] for n in names]


__all__ = ["PASSES", "default_pipeline", "dce", "cse", "fold_constants", "remove_noop_views", "fold_conv_bn",
           "fuse_bias_activation", "fuse_parallel_linears", "fuse_packed_attention", "fuse_add_layer_norm",
           "fuse_add_relu", "fuse_swiglu", "fold_cast_into_index_put"]
