"""Images in: folder data sets, the built-in synthetic set, decode-once arrays, augmentations."""

from skinsearch.data.decode import DecodedData, decode_dataset, load_image
from skinsearch.data.folders import DatasetFiles, scan_dataset

__all__ = ["DatasetFiles", "DecodedData", "decode_dataset", "load_image", "scan_dataset"]
