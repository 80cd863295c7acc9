"""cxr-imbalance-bench: benchmark class-imbalance strategies for multi-label chest X-ray classification.

Heavy libraries (torch, ray) are imported lazily by the modules that need them, so that
``bench --help`` and ``bench list`` stay fast.
"""

__version__ = "0.1.0"
