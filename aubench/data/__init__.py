"""Prepared datasets: the on-disk format every dataset plugin writes and the engine reads."""
from aubench.data.prepared import PreparedDataset, PreparedWriter, dataset_dir, ensure_prepared

__all__ = ["PreparedDataset", "PreparedWriter", "dataset_dir", "ensure_prepared"]
