"""Training data: deepmd/npy and HDF5 systems, batching, neighbor lists, statistics."""

from deepmd_md.data.batch import DataSampler, iterate_frames, make_batch, resolve_batch_size
from deepmd_md.data.neighbor import (
    build_neighbor_data,
    check_sel,
    count_neighbors,
    extend_coord,
    neighbor_candidates,
    neighbor_stat,
)
from deepmd_md.data.stats import energy_bias
from deepmd_md.data.system import System, find_systems, load_system, remap_types

__all__ = [
    "System",
    "load_system",
    "find_systems",
    "remap_types",
    "resolve_batch_size",
    "DataSampler",
    "make_batch",
    "iterate_frames",
    "extend_coord",
    "neighbor_candidates",
    "build_neighbor_data",
    "count_neighbors",
    "check_sel",
    "neighbor_stat",
    "energy_bias",
]
