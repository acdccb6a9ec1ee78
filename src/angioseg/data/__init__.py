"""Data: readers, preprocessing, splits, augmentation, synthetic angiograms."""
