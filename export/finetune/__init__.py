"""Transfer learning on an image folder: data, bottleneck features, the two stages, report."""
