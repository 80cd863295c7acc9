"""Dataset readers, label handling, image cache and splits.

Every reader returns a :class:`bench.data.labels.Records`: an (N, L) float label matrix of
1 / 0 / NaN over a declared label list, plus image paths, patient ids, views and boxes.
"""
