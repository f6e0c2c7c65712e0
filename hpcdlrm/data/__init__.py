"""Stage 1, data: the on-disk format, synthetic and Criteo datasets, and the rank-sharded loader.

    from hpcdlrm.data import open_dataset, RankLoader
    ds = open_dataset("data/synth")
    for batch in RankLoader(ds, "train", rank=r, world_size=R, global_batch_size=2048).epoch(0): ...
"""

from .format import Manifest as Manifest
from .format import read_manifest as read_manifest
from .loader import Batch as Batch
from .loader import Dataset as Dataset
from .loader import RankLoader as RankLoader
from .loader import open_dataset as open_dataset
